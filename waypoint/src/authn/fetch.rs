//! Fetching a JWKS document over plain HTTP (`http://host[:port]/path`) from the waypoint's own
//! network namespace.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;

/// Limit for connecting, sending and reading the whole document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// GETs `url` and parses it as a JWKS.
pub async fn jwks(url: &str) -> Result<JwkSet, String> {
    tokio::time::timeout(FETCH_TIMEOUT, get(url))
        .await
        .map_err(|_| format!("fetching JWKS {url} timed out after {FETCH_TIMEOUT:?}"))?
}

async fn get(url: &str) -> Result<JwkSet, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("jwksUri {url}: only http:// URLs can be fetched (give the keys inline with jwks for https issuers)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting to {addr} for JWKS failed: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {addr} failed: {e}"))?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url} failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url} answered {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading {url} failed: {e}"))?
        .to_bytes();
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not a JWKS document: {e}"))
}
