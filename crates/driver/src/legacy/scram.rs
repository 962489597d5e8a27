//! SCRAM client (RFC 5802 SHA-1, RFC 7677 SHA-256) as MongoDB uses it, pure: messages in,
//! messages out; the network exchange lives in [`super::conn`].
//!
//! MongoDB specifics: SCRAM-SHA-1 derives its salted password from `hex(md5("<user>:mongo:<pw>"))`
//! rather than from the password ([`Mechanism::password_input`]); SCRAM-SHA-256 uses the password
//! itself (SASLprep is the identity on ASCII; other passwords are used as given, which matches
//! servers only when they are already in normalized form). No channel binding (`n,,`).
//!
//! Invariants: the server's nonce must extend ours, the iteration count must be at least 4096,
//! and the exchange succeeds only when the server proves it knows the key (`v=` matches).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Lowest iteration count accepted from a server (the MongoDB auth spec's floor).
pub const MIN_ITERATIONS: u32 = 4096;

/// A SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-1 (MongoDB 3.0+).
    Sha1,
    /// SCRAM-SHA-256 (MongoDB 4.0+).
    Sha256,
}

/// A failed SCRAM exchange (the server's message was malformed or did not prove the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCRAM: {0}")]
pub struct ScramError(pub String);

fn err(msg: impl Into<String>) -> ScramError {
    ScramError(msg.into())
}

impl Mechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha1 => "SCRAM-SHA-1",
            Mechanism::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// SHA-256 when the server lists it in `saslSupportedMechs`, SHA-1 otherwise (servers before
    /// 4.0 do not answer `saslSupportedMechs` and only know SHA-1).
    pub fn negotiate(supported: &[String]) -> Self {
        if supported.iter().any(|m| m == "SCRAM-SHA-256") { Mechanism::Sha256 } else { Mechanism::Sha1 }
    }

    /// The secret PBKDF2 is keyed with, per MongoDB.
    pub fn password_input(self, username: &str, password: &str) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => {
                let digest = Md5::digest(format!("{username}:mongo:{password}").as_bytes());
                hex(&digest).into_bytes()
            }
            Mechanism::Sha256 => password.as_bytes().to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty result would
        // only make the proof wrong (and the server refuse), never pass.
        match self {
            Mechanism::Sha1 => Hmac::<Sha1>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            Mechanism::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => Sha1::digest(data).to_vec(),
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, input: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(input, salt, iterations).to_vec(),
            Mechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(input, salt, iterations).to_vec(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `saslname` escaping of RFC 5802: `=` and `,` in the user name.
fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// A fresh client nonce: 24 random bytes, base64 (printable, no commas).
pub fn new_nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    B64.encode(bytes)
}

/// The client side of one SCRAM conversation, after the client-first message.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    mechanism: Mechanism,
    nonce: String,
    first_bare: String,
}

/// The client side after the client-final message: what the server must sign.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    server_signature: Vec<u8>,
}

impl ClientFirst {
    /// Starts a conversation for `username` with the given nonce (use [`new_nonce`]).
    pub fn new(mechanism: Mechanism, username: &str, nonce: &str) -> Self {
        let first_bare = format!("n={},r={nonce}", escape_username(username));
        Self { mechanism, nonce: nonce.to_owned(), first_bare }
    }

    /// The client-first message (`n,,` GS2 header, no channel binding).
    pub fn message(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Answers the server-first message; `password_input` is [`Mechanism::password_input`].
    pub fn finish(
        &self,
        server_first: &str,
        password_input: &[u8],
    ) -> Result<(String, ClientFinal), ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => return Err(err("server requires an unsupported extension")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| err("server-first message has no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(err("server nonce does not extend the client nonce"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| err("server-first message has no salt"))?)
            .map_err(|_| err("salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| err("server-first message has no iteration count"))?
            .parse()
            .map_err(|_| err("iteration count is not a number"))?;
        if iterations < MIN_ITERATIONS {
            return Err(err(format!("iteration count {iterations} is below {MIN_ITERATIONS}")));
        }
        let m = self.mechanism;
        let salted = m.salted_password(password_input, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac(&salted, b"Server Key");
        let server_signature = m.hmac(&server_key, auth_message.as_bytes());
        Ok((format!("{without_proof},p={}", B64.encode(proof)), ClientFinal { server_signature }))
    }
}

impl ClientFinal {
    /// Checks the server-final message: `v=<signature>` must match, `e=<error>` is a refusal.
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        for attr in server_final.split(',') {
            match attr.split_once('=') {
                Some(("e", e)) => return Err(err(format!("server refused: {e}"))),
                Some(("v", v)) => {
                    let got = B64.decode(v).map_err(|_| err("server signature is not base64"))?;
                    return if got == self.server_signature {
                        Ok(())
                    } else {
                        Err(err("server signature does not match"))
                    };
                }
                _ => {}
            }
        }
        Err(err("server-final message has no signature"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 5802 section 5.
    #[test]
    fn rfc5802_sha1_vector() {
        let c = ClientFirst::new(Mechanism::Sha1, "user", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(c.message(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let (msg, fin) = c.finish(server_first, b"pencil").unwrap();
        assert_eq!(msg, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        fin.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        assert!(fin.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKR=").is_err());
        assert!(fin.verify("e=invalid-proof").is_err());
        assert!(fin.verify("x=1").is_err());
    }

    /// RFC 7677 section 3.
    #[test]
    fn rfc7677_sha256_vector() {
        let c = ClientFirst::new(Mechanism::Sha256, "user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.message(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let input = Mechanism::Sha256.password_input("user", "pencil");
        let (msg, fin) = c.finish(server_first, &input).unwrap();
        assert_eq!(
            msg,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        fin.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
    }

    /// MongoDB's SCRAM-SHA-1 password digest (auth spec test: user "user", password "pencil").
    #[test]
    fn mongodb_sha1_password_digest() {
        assert_eq!(
            Mechanism::Sha1.password_input("user", "pencil"),
            b"1c33006ec1ffd90f9cadcbcc0e118200".to_vec()
        );
    }

    #[test]
    fn refuses_bad_server_first() {
        let c = ClientFirst::new(Mechanism::Sha1, "u,=x", "abc");
        assert_eq!(c.message(), "n,,n=u=2C=3Dx,r=abc");
        for bad in [
            "r=zzz,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abcd,s=QSXCR+Q6sek8bf92,i=1000",
            "r=abcd,s=!!,i=4096",
            "r=abcd,i=4096",
            "r=abcd,s=QSXCR+Q6sek8bf92",
            "m=ext,r=abcd,s=QSXCR+Q6sek8bf92,i=4096",
        ] {
            assert!(c.finish(bad, b"pw").is_err(), "{bad}");
        }
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(Mechanism::negotiate(&["SCRAM-SHA-1".into(), "SCRAM-SHA-256".into()]), Mechanism::Sha256);
        assert_eq!(Mechanism::negotiate(&["SCRAM-SHA-1".into()]), Mechanism::Sha1);
        assert_eq!(Mechanism::negotiate(&[]), Mechanism::Sha1);
    }
}
