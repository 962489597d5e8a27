//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) as MongoDB uses them: both halves, pure
//! (messages in, messages out; no IO). The embedded node runs the server half
//! ([`parse_client_first`], [`ServerConversation`]); the driver's legacy client the client half
//! ([`ClientFirst`], [`ClientFinal`]). One key schedule ([`Keys`]) serves both, so they cannot
//! drift apart.
//!
//! MongoDB specifics: SCRAM-SHA-1 keys PBKDF2 with `hex(md5("<user>:mongo:<password>"))`, not the
//! password ([`Mechanism::password_input`]); SCRAM-SHA-256 uses the password itself (SASLprep is
//! the identity on ASCII; other passwords are used as given, which matches a server only when
//! they are already normalized). No channel binding (`n,,`).
//!
//! Invariants: a server stores only salt, iteration count, StoredKey and ServerKey
//! ([`ScramCredential`]) and compares proofs in constant time; a client accepts a server nonce
//! only when it extends its own, an iteration count only from [`MIN_ITERATIONS`], and succeeds
//! only when the server proves it knows the key (`v=` matches).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Lowest iteration count a client accepts from a server (the MongoDB auth spec's floor).
pub const MIN_ITERATIONS: u32 = 4096;

/// A SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-1 (MongoDB 3.0+).
    Sha1,
    /// SCRAM-SHA-256 (MongoDB 4.0+).
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

    /// SHA-256 when the server lists it in `saslSupportedMechs`, SHA-1 otherwise (servers before
    /// 4.0 do not answer `saslSupportedMechs` and only know SHA-1).
    pub fn negotiate(supported: &[String]) -> Self {
        if supported.iter().any(|m| m == "SCRAM-SHA-256") { Mechanism::Sha256 } else { Mechanism::Sha1 }
    }

    /// mongod's default iteration count.
    pub fn default_iterations(self) -> u32 {
        match self {
            Mechanism::Sha1 => 10_000,
            Mechanism::Sha256 => 15_000,
        }
    }

    /// mongod's salt length for new credentials.
    fn salt_len(self) -> usize {
        match self {
            Mechanism::Sha1 => 16,
            Mechanism::Sha256 => 28,
        }
    }

    /// The secret PBKDF2 is keyed with, per MongoDB.
    pub fn password_input(self, username: &str, password: &str) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => {
                let digest = Md5::digest(format!("{username}:mongo:{password}").as_bytes());
                digest.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
            }
            Mechanism::Sha256 => password.as_bytes().to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail; an empty result would
        // only make a proof wrong (and the exchange fail), never pass.
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

/// The key schedule of RFC 5802 section 3 for one password, salt and iteration count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    mechanism: Mechanism,
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Keys {
    /// Derives the keys from `password_input` ([`Mechanism::password_input`]).
    pub fn derive(mechanism: Mechanism, password_input: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = mechanism.salted_password(password_input, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let stored_key = mechanism.hash(&client_key);
        Keys { mechanism, client_key, stored_key, server_key }
    }

    /// ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
    fn client_proof(&self, auth_message: &str) -> Vec<u8> {
        let signature = self.mechanism.hmac(&self.stored_key, auth_message.as_bytes());
        self.client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect()
    }
}

/// HMAC(ServerKey, AuthMessage): what the server sends as `v=`.
fn server_signature(mechanism: Mechanism, server_key: &[u8], auth_message: &str) -> Vec<u8> {
    mechanism.hmac(server_key, auth_message.as_bytes())
}

/// Why a SCRAM exchange failed. A server answers every one of them as "Authentication failed."
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The peer's message does not parse.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which MongoDB does not use.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The client-final message carries another nonce than the conversation's.
    #[error("nonce mismatch")]
    Nonce,
    /// The client's proof is wrong (wrong password).
    #[error("invalid proof")]
    Proof,
    /// The server's answer is unacceptable to the client (nonce, iterations, signature,
    /// extensions) or a refusal (`e=`).
    #[error("SCRAM: {0}")]
    Server(String),
}

fn attr(part: &str, key: char) -> Option<&str> {
    let mut chars = part.chars();
    if chars.next() == Some(key) && chars.next() == Some('=') { Some(&part[2..]) } else { None }
}

/// RFC 5802 `saslname` escaping (`=` and `,` in the user name).
fn escape_name(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// Decodes `saslname` escaping (`=2C` is `,`, `=3D` is `=`).
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ------------------------------------------------------------------------------------ server

/// What a server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub iteration_count: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Derives a credential with a fresh random salt and mongod's default iteration count.
pub fn new_credential(mechanism: Mechanism, user: &str, password: &str) -> ScramCredential {
    let mut salt = vec![0u8; mechanism.salt_len()];
    rand::thread_rng().fill_bytes(&mut salt);
    derive_credential(mechanism, user, password, &salt, mechanism.default_iterations())
}

/// Derives a credential from a given salt and iteration count.
pub fn derive_credential(
    mechanism: Mechanism,
    user: &str,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> ScramCredential {
    let keys = Keys::derive(mechanism, &mechanism.password_input(user, password), salt, iterations);
    ScramCredential {
        iteration_count: iterations,
        salt: salt.to_vec(),
        stored_key: keys.stored_key,
        server_key: keys.server_key,
    }
}

/// A client-first message as the server parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirstMessage {
    pub user: String,
    pub nonce: String,
    /// The client-first-bare part (`n=...,r=...`), part of the AuthMessage.
    pub bare: String,
}

/// Parses `n,,n=user,r=nonce` (gs2 header `n` or `y`; `p=` channel binding is refused).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirstMessage, ScramError> {
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
    Ok(ClientFirstMessage { user, nonce, bare: bare.to_owned() })
}

/// A server-side conversation after the server-first message.
#[derive(Debug, Clone)]
pub struct ServerConversation {
    pub mechanism: Mechanism,
    pub user: String,
    cred: ScramCredential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerConversation {
    /// Starts a conversation for `first` against `cred`: the conversation and the server-first
    /// message (`r=<client nonce><server nonce>,s=<salt>,i=<iterations>`).
    pub fn start(mechanism: Mechanism, first: &ClientFirstMessage, cred: ScramCredential) -> (Self, Vec<u8>) {
        let mut server_nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut server_nonce);
        let nonce = format!("{}{}", first.nonce, B64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iteration_count);
        let conv = ServerConversation {
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
        if !constant_time_eq(&m.hash(&client_key), &self.cred.stored_key) {
            return Err(ScramError::Proof);
        }
        let signature = server_signature(m, &self.cred.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(signature)).into_bytes())
    }
}

// ------------------------------------------------------------------------------------ client

/// A fresh client nonce: 24 random bytes, base64 (printable, no commas).
pub fn new_nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    B64.encode(bytes)
}

/// The client side of one conversation, after the client-first message.
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
        let first_bare = format!("n={},r={nonce}", escape_name(username));
        Self { mechanism, nonce: nonce.to_owned(), first_bare }
    }

    /// The client-first message (`n,,` GS2 header, no channel binding).
    pub fn message(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The client-first-bare part (`n=...,r=...`).
    pub fn bare(&self) -> &str {
        &self.first_bare
    }

    /// Answers the server-first message; `password_input` is [`Mechanism::password_input`].
    pub fn finish(
        &self,
        server_first: &str,
        password_input: &[u8],
    ) -> Result<(String, ClientFinal), ScramError> {
        let server = |m: &str| ScramError::Server(m.to_owned());
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => return Err(server("server requires an unsupported extension")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| server("server-first message has no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(server("server nonce does not extend the client nonce"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| server("server-first message has no salt"))?)
            .map_err(|_| server("salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| server("server-first message has no iteration count"))?
            .parse()
            .map_err(|_| server("iteration count is not a number"))?;
        if iterations < MIN_ITERATIONS {
            return Err(ScramError::Server(format!(
                "iteration count {iterations} is below {MIN_ITERATIONS}"
            )));
        }
        let keys = Keys::derive(self.mechanism, password_input, &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let proof = keys.client_proof(&auth_message);
        let fin = ClientFinal {
            server_signature: server_signature(self.mechanism, &keys.server_key, &auth_message),
        };
        Ok((format!("{without_proof},p={}", B64.encode(proof)), fin))
    }
}

impl ClientFinal {
    /// Checks the server-final message: `v=<signature>` must match, `e=<error>` is a refusal.
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        for part in server_final.split(',') {
            match part.split_once('=') {
                Some(("e", e)) => return Err(ScramError::Server(format!("server refused: {e}"))),
                Some(("v", v)) => {
                    let got = B64
                        .decode(v)
                        .map_err(|_| ScramError::Server("server signature is not base64".into()))?;
                    return if constant_time_eq(&got, &self.server_signature) {
                        Ok(())
                    } else {
                        Err(ScramError::Server("server signature does not match".into()))
                    };
                }
                _ => {}
            }
        }
        Err(ScramError::Server("server-final message has no signature".into()))
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

    /// MongoDB's SCRAM-SHA-1 password digest (auth spec: user "user", password "pencil").
    #[test]
    fn mongodb_sha1_password_digest() {
        assert_eq!(
            Mechanism::Sha1.password_input("user", "pencil"),
            b"1c33006ec1ffd90f9cadcbcc0e118200".to_vec()
        );
    }

    /// The two halves against each other, both mechanisms, names that need escaping.
    #[test]
    fn client_and_server_agree() {
        for mech in [Mechanism::Sha1, Mechanism::Sha256] {
            for user in ["alice", "a,b=c"] {
                let cred = derive_credential(mech, user, "s3cret", b"0123456789abcdef", 4096);
                let client = ClientFirst::new(mech, user, &new_nonce());
                let first = parse_client_first(client.message().as_bytes()).unwrap();
                assert_eq!(first.user, user);
                let (conv, server_first) = ServerConversation::start(mech, &first, cred.clone());
                let server_first = String::from_utf8(server_first).unwrap();
                let (client_final, fin) =
                    client.finish(&server_first, &mech.password_input(user, "s3cret")).unwrap();
                let server_final = conv.finish(client_final.as_bytes()).unwrap();
                fin.verify(std::str::from_utf8(&server_final).unwrap()).unwrap();
                let (wrong, _) = client.finish(&server_first, &mech.password_input(user, "wrong")).unwrap();
                assert_eq!(conv.finish(wrong.as_bytes()), Err(ScramError::Proof));
            }
        }
    }

    #[test]
    fn client_first_parsing() {
        assert_eq!(parse_client_first(b"p=tls-unique,,n=a,r=x"), Err(ScramError::ChannelBinding));
        assert!(parse_client_first(b"n,,n=a").is_err());
        assert!(parse_client_first(b"\xff\xfe").is_err());
        assert_eq!(parse_client_first(b"n,,n=a=2Cb=3D,r=x").unwrap().user, "a,b=");
        assert!(parse_client_first(b"n,,n=a=zz,r=x").is_err());
        assert!(parse_client_first(b"n,,n=a,r=x,m=ext").is_err());
    }

    #[test]
    fn server_refuses_a_foreign_nonce() {
        let cred = derive_credential(Mechanism::Sha256, "u", "p", b"salt", 4096);
        let first = parse_client_first(b"n,,n=u,r=abc").unwrap();
        let (conv, _) = ServerConversation::start(Mechanism::Sha256, &first, cred);
        assert_eq!(conv.finish(b"c=biws,r=abcXYZ,p=AAAA"), Err(ScramError::Nonce));
        assert!(conv.finish(b"c=biws,r=abc").is_err(), "no proof");
    }

    #[test]
    fn client_refuses_bad_server_first() {
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

    #[test]
    fn new_credentials_have_mongods_salt_and_iterations() {
        let c = new_credential(Mechanism::Sha256, "u", "p");
        assert_eq!((c.salt.len(), c.iteration_count), (28, 15_000));
        let c = new_credential(Mechanism::Sha1, "u", "p");
        assert_eq!((c.salt.len(), c.iteration_count), (16, 10_000));
    }
}
