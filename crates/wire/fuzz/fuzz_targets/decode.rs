//! Fuzz target: any byte sequence through the frame decoder and the one-shot frame parser.
//! Run with `cargo fuzz run decode` from `crates/wire` (needs cargo-fuzz and a nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dec = docplane_wire::FrameDecoder::new(docplane_wire::DEFAULT_MAX_MESSAGE_SIZE);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(msg)) = dec.decode(&mut buf) {
        // Re-encoding a decoded message must succeed and decode to the same message.
        if let Ok(bytes) = docplane_wire::encode_message(&msg) {
            let again = docplane_wire::decode_frame(&bytes);
            assert!(again.is_ok());
        }
    }
    let _ = docplane_wire::decode_frame(data);
});
