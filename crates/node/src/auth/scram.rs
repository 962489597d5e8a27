//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802 / RFC 7677) as MongoDB uses them, server side, pure.
//!
//! MongoDB quirks: SCRAM-SHA-1 hashes the password as `hex(md5("<user>:mongo:<password>"))` before PBKDF2;
//! SCRAM-SHA-256 uses the password itself (SASLprep is the identity for ASCII passwords, which is all we
//! normalize). Stored credentials hold only salt, iteration count, StoredKey and ServerKey.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha1,
    Sha256,
}

impl Mechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha1 => "SCRAM-SHA-1",
            Mechanism::Sha256 => "SCRAM-SHA-256",
        }
    }
    /// Parses a SASL mechanism name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SCRAM-SHA-1" => Some(Mechanism::Sha1),
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            _ => None,
        }
    }
    /// mongod's default iteration count.
    pub fn default_iterations(self) -> u32 {
        match self {
            Mechanism::Sha1 => 10_000,
            Mechanism::Sha256 => 15_000,
        }
    }
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => match Hmac::<Sha1>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            Mechanism::Sha256 => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => Sha1::digest(data).to_vec(),
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
        }
    }
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub iteration_count: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// The password as the mechanism feeds it to PBKDF2.
fn prepared_password(mech: Mechanism, user: &str, password: &str) -> Vec<u8> {
    match mech {
        Mechanism::Sha1 => {
            let digest = md5::Md5::digest(format!("{user}:mongo:{password}").as_bytes());
            hex_lower(&digest).into_bytes()
        }
        Mechanism::Sha256 => password.as_bytes().to_vec(),
    }
}

fn hex_lower(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Derives a credential with a fresh random salt.
pub fn new_credential(mech: Mechanism, user: &str, password: &str) -> ScramCredential {
    let mut salt = vec![
        0u8;
        match mech {
            Mechanism::Sha1 => 16,
            Mechanism::Sha256 => 28,
        }
    ];
    rand::thread_rng().fill_bytes(&mut salt);
    derive_credential(mech, user, password, &salt, mech.default_iterations())
}

/// Derives a credential from a given salt and iteration count.
pub fn derive_credential(
    mech: Mechanism,
    user: &str,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> ScramCredential {
    let salted = mech.salted_password(&prepared_password(mech, user, password), salt, iterations);
    let client_key = mech.hmac(&salted, b"Client Key");
    let server_key = mech.hmac(&salted, b"Server Key");
    ScramCredential {
        iteration_count: iterations,
        salt: salt.to_vec(),
        stored_key: mech.hash(&client_key),
        server_key,
    }
}

/// Why a SCRAM exchange failed; the client only ever sees "Authentication failed.".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("nonce mismatch")]
    Nonce,
    #[error("invalid proof")]
    Proof,
    #[error("unknown user")]
    UnknownUser,
}

/// Parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
    pub bare: String,
}

fn attr(part: &str, key: char) -> Option<&str> {
    let mut chars = part.chars();
    if chars.next() == Some(key) && chars.next() == Some('=') { Some(&part[2..]) } else { None }
}

/// Decodes the SCRAM `saslname` escaping (`=2C` is `,`, `=3D` is `=`).
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad name escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `n,,n=user,r=nonce` (gs2 header `n` or `y`; `p=` channel binding is refused).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let s = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut it = s.splitn(3, ',');
    let cb = it.next().ok_or(ScramError::Malformed("empty"))?;
    match cb {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("gs2 header")),
    }
    let _authzid = it.next().ok_or(ScramError::Malformed("gs2 header"))?;
    let bare = it.next().ok_or(ScramError::Malformed("no client-first-bare"))?;
    let mut user = None;
    let mut nonce = None;
    for part in bare.split(',') {
        if let Some(v) = attr(part, 'n') {
            user = Some(unescape_name(v)?);
        } else if let Some(v) = attr(part, 'r') {
            nonce = Some(v.to_owned());
        } else if part.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension"));
        }
    }
    let user = user.ok_or(ScramError::Malformed("no user"))?;
    let nonce = nonce.filter(|n| !n.is_empty()).ok_or(ScramError::Malformed("no nonce"))?;
    Ok(ClientFirst { user, nonce, bare: bare.to_owned() })
}

/// A server-side conversation after the server-first message.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub mechanism: Mechanism,
    pub user: String,
    cred: ScramCredential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Conversation {
    /// Starts a conversation for `client_first` against `cred`, returning it and the server-first message.
    pub fn start(mechanism: Mechanism, first: &ClientFirst, cred: ScramCredential) -> (Self, Vec<u8>) {
        let mut server_nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut server_nonce);
        let nonce = format!("{}{}", first.nonce, B64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iteration_count);
        let conv = Conversation {
            mechanism,
            user: first.user.clone(),
            cred,
            client_first_bare: first.bare.clone(),
            server_first: server_first.clone(),
            nonce,
        };
        (conv, server_first.into_bytes())
    }

    /// Verifies the client-final message and returns the server-final message (`v=...`).
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let s = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let proof_at = s.rfind(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let without_proof = &s[..proof_at];
        let proof = B64.decode(&s[proof_at + 3..]).map_err(|_| ScramError::Malformed("proof base64"))?;
        let mut nonce_ok = false;
        for part in without_proof.split(',') {
            if let Some(v) = attr(part, 'r') {
                nonce_ok = v == self.nonce;
            } else if let Some(v) = attr(part, 'c') {
                let cb = B64.decode(v).map_err(|_| ScramError::Malformed("channel binding base64"))?;
                if cb != b"n,," && cb != b"y,," {
                    return Err(ScramError::ChannelBinding);
                }
            }
        }
        if !nonce_ok {
            return Err(ScramError::Nonce);
        }
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let m = self.mechanism;
        let client_signature = m.hmac(&self.cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Proof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        let computed = m.hash(&client_key);
        if !constant_time_eq(&computed, &self.cred.stored_key) {
            return Err(ScramError::Proof);
        }
        let server_signature = m.hmac(&self.cred.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client side, used by tests to exercise the server half.
pub mod client {
    use super::*;

    /// Computes the client-final message for a server-first message.
    pub fn client_final(
        mech: Mechanism,
        user: &str,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> Option<(String, Vec<u8>)> {
        let mut nonce = None;
        let mut salt = None;
        let mut iters = None;
        for part in server_first.split(',') {
            if let Some(v) = attr(part, 'r') {
                nonce = Some(v);
            } else if let Some(v) = attr(part, 's') {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr(part, 'i') {
                iters = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iters) = (nonce?, salt?, iters?);
        let salted = mech.salted_password(&prepared_password(mech, user, password), &salt, iters);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        let server_sig = mech.hmac(&server_key, auth_message.as_bytes());
        Some((format!("{without_proof},p={}", B64.encode(proof)), server_sig))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc7677_style_round_trip_both_mechanisms() {
        for mech in [Mechanism::Sha1, Mechanism::Sha256] {
            let cred = derive_credential(mech, "alice", "s3cret", b"0123456789abcdef", 4096);
            let first = parse_client_first(b"n,,n=alice,r=clientnonce").unwrap();
            assert_eq!(first.user, "alice");
            let (conv, sf) = Conversation::start(mech, &first, cred.clone());
            let sf = String::from_utf8(sf).unwrap();
            assert!(sf.starts_with("r=clientnonce"));
            let (cfinal, server_sig) =
                client::client_final(mech, "alice", "s3cret", &first.bare, &sf).unwrap();
            let v = conv.finish(cfinal.as_bytes()).unwrap();
            assert_eq!(v, format!("v={}", B64.encode(server_sig)).into_bytes());
            let (bad, _) = client::client_final(mech, "alice", "wrong", &first.bare, &sf).unwrap();
            assert_eq!(conv.finish(bad.as_bytes()), Err(ScramError::Proof));
        }
    }

    #[test]
    fn sha1_uses_mongodb_password_digest() {
        // hex(md5("user:mongo:pencil"))
        let p = prepared_password(Mechanism::Sha1, "user", "pencil");
        assert_eq!(p, b"1c33006ec1ffd90f9cadcbcc0e118200".to_vec());
    }

    #[test]
    fn client_first_parsing() {
        assert_eq!(parse_client_first(b"p=tls-unique,,n=a,r=x"), Err(ScramError::ChannelBinding));
        assert!(parse_client_first(b"n,,n=a").is_err());
        assert!(parse_client_first(b"\xff\xfe").is_err());
        assert_eq!(parse_client_first(b"n,,n=a=2Cb=3D,r=x").unwrap().user, "a,b=");
        assert!(parse_client_first(b"n,,n=a=zz,r=x").is_err());
    }

    #[test]
    fn wrong_nonce_rejected() {
        let cred = derive_credential(Mechanism::Sha256, "u", "p", b"salt", 1000);
        let first = parse_client_first(b"n,,n=u,r=abc").unwrap();
        let (conv, _) = Conversation::start(Mechanism::Sha256, &first, cred);
        assert_eq!(conv.finish(b"c=biws,r=abcXYZ,p=AAAA"), Err(ScramError::Nonce));
    }
}
