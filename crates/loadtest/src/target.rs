//! Loopback-only targets: every address these programs connect to or listen on must be 127.0.0.1,
//! `::1` or `localhost`.

use std::net::{IpAddr, SocketAddr};

/// An address that is not on this machine's loopback interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: only loopback targets (127.0.0.1, ::1, localhost) are allowed")]
pub struct NotLoopback(pub String);

/// Checks a socket address.
pub fn loopback_addr(addr: SocketAddr) -> Result<SocketAddr, NotLoopback> {
    if addr.ip().is_loopback() { Ok(addr) } else { Err(NotLoopback(addr.to_string())) }
}

/// Checks a host name or literal (no port).
pub fn loopback_host(host: &str) -> Result<(), NotLoopback> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(()),
        _ => Err(NotLoopback(host.to_owned())),
    }
}

/// Checks an `http://` / `https://` endpoint and returns it without a trailing `/`.
pub fn loopback_endpoint(url: &str) -> Result<String, NotLoopback> {
    let parsed = reqwest::Url::parse(url).map_err(|_| NotLoopback(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(NotLoopback(url.to_owned()));
    }
    loopback_host(parsed.host_str().unwrap_or(""))?;
    Ok(url.trim_end_matches('/').to_owned())
}

/// Checks every host of a `mongodb://user:pass@h1:p1,h2:p2/...` URI. The error never carries the
/// URI itself (it holds a password), only the offending host.
pub fn loopback_mongodb_uri(uri: &str) -> Result<(), NotLoopback> {
    let rest = uri.strip_prefix("mongodb://").ok_or_else(|| NotLoopback("(not a mongodb:// URI)".into()))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hosts.is_empty() {
        return Err(NotLoopback("(no host)".into()));
    }
    for h in hosts.split(',') {
        let host = match h.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => h,
        };
        loopback_host(host)?;
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_passes() {
        assert!(loopback_addr("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(loopback_addr("[::1]:80".parse().unwrap()).is_ok());
        assert!(loopback_addr("10.0.0.1:80".parse().unwrap()).is_err());
        assert!(loopback_addr("0.0.0.0:80".parse().unwrap()).is_err());
        assert_eq!(loopback_endpoint("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert!(loopback_endpoint("http://localhost:1").is_ok());
        assert!(loopback_endpoint("http://[::1]:1").is_ok());
        assert!(loopback_endpoint("http://example.com").is_err());
        assert!(loopback_endpoint("http://127.0.0.1.example.com").is_err());
        assert!(loopback_endpoint("ftp://127.0.0.1").is_err());
        assert!(loopback_mongodb_uri("mongodb://root:p%40ss@127.0.0.1:27017/?authSource=admin").is_ok());
        assert!(loopback_mongodb_uri("mongodb://127.0.0.1:1,localhost:2").is_ok());
        assert!(loopback_mongodb_uri("mongodb://127.0.0.1:1,db.example.com:2").is_err());
        let e = loopback_mongodb_uri("mongodb://root:secret@10.1.1.1:27017").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(loopback_mongodb_uri("mongodb+srv://x").is_err());
    }
}
