//! Codec tests: hand-built frames, round-trips (proptest) and random bytes that must never panic.
#![allow(clippy::unwrap_used)]

use bson::{Bson, Document, doc};
use bytes::BytesMut;
use docplane_wire::*;
use proptest::prelude::*;

fn msg(body: Document) -> Message {
    Message::new(7, 0, Op::Msg(OpMsg::new(body)))
}

#[test]
fn op_msg_round_trip_with_sequence_and_checksum() {
    let m = Message::new(
        42,
        3,
        Op::Msg(OpMsg {
            flags: flags::CHECKSUM_PRESENT,
            body: doc! {"insert": "c", "$db": "d"},
            sequences: vec![DocumentSequence {
                identifier: "documents".into(),
                documents: vec![doc! {"a": 1}, doc! {"a": 2}],
            }],
        }),
    );
    let bytes = encode_message(&m).unwrap();
    assert_eq!(i32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len());
    let back = decode_frame(&bytes).unwrap();
    assert_eq!(back.header.request_id, 42);
    assert_eq!(back.header.response_to, 3);
    assert_eq!(back.op, m.op);
    let Op::Msg(om) = back.op else { panic!() };
    let cmd = om.into_command();
    assert_eq!(cmd.get_array("documents").unwrap().len(), 2);
}

#[test]
fn checksum_mismatch_is_rejected() {
    let mut m = OpMsg::new(doc! {"ping": 1});
    m.flags = flags::CHECKSUM_PRESENT;
    let mut bytes = encode_message(&Message::new(1, 0, Op::Msg(m))).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    assert!(matches!(decode_frame(&bytes), Err(WireError::ChecksumMismatch { .. })));
}

#[test]
fn unknown_required_flag_is_rejected() {
    let mut m = OpMsg::new(doc! {"ping": 1});
    m.flags = 1 << 5;
    let bytes = encode_message(&Message::new(1, 0, Op::Msg(m))).unwrap();
    assert_eq!(decode_frame(&bytes), Err(WireError::UnknownRequiredFlags(1 << 5)));
    // exhaustAllowed (bit 16) is optional and accepted.
    let mut m = OpMsg::new(doc! {"ping": 1});
    m.flags = flags::EXHAUST_ALLOWED | flags::MORE_TO_COME;
    let bytes = encode_message(&Message::new(1, 0, Op::Msg(m))).unwrap();
    let Op::Msg(back) = decode_frame(&bytes).unwrap().op else { panic!() };
    assert!(back.more_to_come());
}

#[test]
fn op_msg_without_body_or_with_two_bodies_is_malformed() {
    let mut bytes = encode_message(&msg(doc! {"a": 1})).unwrap();
    // append a second body section and fix the length
    let extra = bson::to_vec(&doc! {"b": 1}).unwrap();
    bytes.push(0);
    bytes.extend_from_slice(&extra);
    let len = bytes.len() as i32;
    bytes[0..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(decode_frame(&bytes), Err(WireError::Malformed { .. })));
    // flags only, no section
    let mut only_flags = vec![0u8; 20];
    only_flags[0..4].copy_from_slice(&20i32.to_le_bytes());
    only_flags[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    assert!(matches!(decode_frame(&only_flags), Err(WireError::Malformed { .. })));
}

#[test]
fn op_query_and_reply_round_trip() {
    let q = Message::new(
        5,
        0,
        Op::Query(OpQuery {
            flags: 0,
            full_collection_name: "admin.$cmd".into(),
            number_to_skip: 0,
            number_to_return: -1,
            query: doc! {"$query": {"isMaster": 1}, "$readPreference": {"mode": "primary"}},
            return_fields_selector: None,
        }),
    );
    let back = decode_frame(&encode_message(&q).unwrap()).unwrap();
    let Op::Query(oq) = &back.op else { panic!() };
    assert_eq!(oq.command_db(), Some("admin"));
    assert_eq!(oq.command(), doc! {"isMaster": 1});
    let r = Message::new(
        9,
        5,
        Op::Reply(OpReply {
            response_flags: 8,
            cursor_id: 0,
            starting_from: 0,
            documents: vec![doc! {"ok": 1.0}],
        }),
    );
    assert_eq!(decode_frame(&encode_message(&r).unwrap()).unwrap().op, r.op);
}

#[test]
fn frame_decoder_is_incremental_and_bounded() {
    let dec = FrameDecoder::new(1000);
    let bytes = encode_message(&msg(doc! {"ping": 1})).unwrap();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let out = dec.decode(&mut buf).unwrap();
        assert_eq!(out.is_some(), i == bytes.len() - 1);
    }
    assert!(buf.is_empty());
    let mut big = BytesMut::from(&2000i32.to_le_bytes()[..]);
    assert_eq!(dec.decode(&mut big), Err(WireError::TooLarge { len: 2000, max: 1000 }));
    let mut small = BytesMut::from(&8i32.to_le_bytes()[..]);
    assert_eq!(dec.decode(&mut small), Err(WireError::BadLength(8)));
    let mut neg = BytesMut::from(&(-1i32).to_le_bytes()[..]);
    assert_eq!(dec.decode(&mut neg), Err(WireError::BadLength(-1)));
}

#[test]
fn deep_nesting_is_rejected_without_overflow() {
    let mut d = doc! {"x": 1};
    for _ in 0..(MAX_BSON_DEPTH + 10) {
        d = doc! {"n": d};
    }
    let bytes = encode_message(&msg(d)).unwrap();
    assert!(matches!(decode_frame(&bytes), Err(WireError::Malformed { .. })));
}

#[test]
fn unsupported_opcode() {
    let mut bytes = encode_message(&msg(doc! {})).unwrap();
    bytes[12..16].copy_from_slice(&2012i32.to_le_bytes());
    assert_eq!(decode_frame(&bytes), Err(WireError::UnsupportedOpCode(2012)));
}

fn arb_bson() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<bool>().prop_map(Bson::Boolean),
        "[a-z0-9 ]{0,12}".prop_map(Bson::String),
        Just(Bson::Null),
        (-1e9f64..1e9).prop_map(Bson::Double),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

fn arb_doc() -> impl Strategy<Value = Document> {
    prop::collection::vec(("[a-z$]{1,8}", arb_bson()), 0..5).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #[test]
    fn op_msg_round_trips(body in arb_doc(), docs in prop::collection::vec(arb_doc(), 0..4),
                          ident in "[a-z]{1,10}", checksum in any::<bool>(), more in any::<bool>(),
                          rid in any::<i32>(), rto in any::<i32>()) {
        let mut flags_v = 0;
        if checksum { flags_v |= flags::CHECKSUM_PRESENT; }
        if more { flags_v |= flags::MORE_TO_COME; }
        let seqs = if docs.is_empty() { vec![] } else { vec![DocumentSequence { identifier: ident, documents: docs }] };
        let m = Message::new(rid, rto, Op::Msg(OpMsg { flags: flags_v, body, sequences: seqs }));
        let bytes = encode_message(&m).unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let back = FrameDecoder::new(DEFAULT_MAX_MESSAGE_SIZE).decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(back.op, m.op);
        prop_assert_eq!(back.header.request_id, rid);
        prop_assert_eq!(back.header.response_to, rto);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn op_reply_round_trips(docs in prop::collection::vec(arb_doc(), 0..4), cursor in any::<i64>()) {
        let m = Message::new(1, 2, Op::Reply(OpReply { response_flags: 0, cursor_id: cursor, starting_from: 0, documents: docs }));
        let back = decode_frame(&encode_message(&m).unwrap()).unwrap();
        prop_assert_eq!(back.op, m.op);
    }

    /// Random bytes never panic the decoder.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let dec = FrameDecoder::new(4096);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
        let _ = decode_frame(&bytes);
    }

    /// Valid frames with random corruption never panic the decoder.
    #[test]
    fn corrupted_frames_never_panic(body in arb_doc(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encode_message(&msg(body)).unwrap();
        for (i, v) in flips {
            let i = i.index(bytes.len());
            if i >= 4 { bytes[i] = v; }
        }
        let _ = decode_frame(&bytes);
    }
}
