//! What a tunnel carries: HTTP (HTTP/1.1 or HTTP/2 prior knowledge; hyper tells them apart by the
//! preface) or opaque TCP. Decided by the service port's `appProtocol`, else by the first bytes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Result of detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// HTTP/1.1 or HTTP/2 cleartext.
    Http,
    /// Anything else: relayed as bytes.
    Tcp,
}

/// Bytes read before giving up on a decision (a request line's method is at most 7 bytes).
const SNIFF_LIMIT: usize = 64;

/// Request-line methods (and `PRI`, the HTTP/2 preface).
const METHODS: [&[u8]; 10] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"PRI",
];

/// The decision an `appProtocol` makes (Kubernetes / Istio names), if it makes one.
pub fn by_app_protocol(app_protocol: Option<&str>) -> Option<Detected> {
    let p = app_protocol?.to_ascii_lowercase();
    let p = p.rsplit('/').next().unwrap_or(&p).to_owned();
    match p.as_str() {
        "http" | "http2" | "h2c" | "grpc" | "grpc-web" | "kubernetes.io/h2c" => {
            Some(Detected::Http)
        }
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" => Some(Detected::Tcp),
        _ => None,
    }
}

/// Classifies `buf`: `Some` once the bytes decide, `None` while more are needed.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    let token_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if token_len < buf.len() {
        // The token ended: HTTP if it is a method followed by a space.
        let is_method = METHODS.contains(&&buf[..token_len]) && buf[token_len] == b' ';
        return Some(if is_method {
            Detected::Http
        } else {
            Detected::Tcp
        });
    }
    // Only upper-case letters so far: a method's prefix needs more bytes.
    let could_be = METHODS.iter().any(|m| m.starts_with(buf));
    if could_be && buf.len() < SNIFF_LIMIT {
        None
    } else {
        Some(Detected::Tcp)
    }
}

/// Reads the first bytes of `stream` until they decide, the stream ends or `timeout` passes
/// (then: TCP). Returns the bytes read, to be replayed.
pub async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> std::io::Result<(Bytes, Detected)> {
    let mut buf = BytesMut::with_capacity(SNIFF_LIMIT);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(d) = (!buf.is_empty()).then(|| classify(&buf)).flatten() {
            return Ok((buf.freeze(), d));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok((buf.freeze(), Detected::Tcp)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn request_lines_and_the_h2_preface_are_http() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http));
        assert_eq!(classify(b"POST "), Some(Detected::Http));
        assert_eq!(classify(b"PRI * HTTP/2.0"), Some(Detected::Http));
        assert_eq!(classify(b"GE"), None, "needs more bytes");
        assert_eq!(classify(b"GETX / HTTP/1.1"), Some(Detected::Tcp));
        assert_eq!(classify(b"hello"), Some(Detected::Tcp));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Detected::Tcp), "TLS");
        assert_eq!(classify(b"SSH-2.0"), Some(Detected::Tcp));
    }

    #[test]
    fn app_protocols_decide_without_sniffing() {
        assert_eq!(by_app_protocol(Some("http")), Some(Detected::Http));
        assert_eq!(by_app_protocol(Some("GRPC")), Some(Detected::Http));
        assert_eq!(
            by_app_protocol(Some("kubernetes.io/h2c")),
            Some(Detected::Http)
        );
        assert_eq!(by_app_protocol(Some("tcp")), Some(Detected::Tcp));
        assert_eq!(by_app_protocol(Some("custom")), None);
        assert_eq!(by_app_protocol(None), None);
    }

    #[tokio::test]
    async fn sniffing_keeps_the_bytes_and_times_out_to_tcp() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GE").await.unwrap();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.write_all(b"T /x HTTP/1.1\r\n").await.unwrap();
            a
        });
        let (bytes, d) = sniff(&mut b, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d, Detected::Http);
        assert!(bytes.starts_with(b"GET "), "{bytes:?}");
        let _a = task.await.unwrap();
        // A silent client (server-first protocol) is TCP after the timeout.
        let (_c, mut d2) = tokio::io::duplex(64);
        let (bytes, d) = sniff(&mut d2, Duration::from_millis(30)).await.unwrap();
        assert_eq!((bytes.len(), d), (0, Detected::Tcp));
    }
}
