//! Fetching a JWKS document (`http://` or `https://host[:port]/path`) from the waypoint's own
//! network namespace. `https` is verified against the system's roots (`rustls-native-certs`:
//! `/etc/ssl/certs`, or `SSL_CERT_FILE`) plus the optional extra CA of `--jwks-ca`, with the
//! waypoint's crypto provider (so the `fips` build covers it too: TLS 1.3, AES-GCM).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

/// Limit for connecting, sending and reading the whole document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The TLS client settings of `https` fetches: system roots plus `extra_ca` (PEM). Fails when the
/// extra CA cannot be read or holds no certificate, or when no root at all is usable.
pub fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --jwks-ca {}: {e}", path.display()))?;
        let bundle = mesh_identity::TrustBundle::from_pem(&pem)
            .map_err(|e| format!("--jwks-ca {}: {e}", path.display()))?;
        for cert in bundle.roots() {
            roots
                .add(cert.clone())
                .map_err(|e| format!("--jwks-ca {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no root certificate to verify https JWKS servers with (system roots: {added} usable, \
             errors: {:?}); install ca-certificates or give --jwks-ca",
            native.errors
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(mesh_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// GETs `url` and parses it as a JWKS; `tls` is needed for `https://` URLs.
pub async fn jwks(
    url: &str,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
) -> Result<JwkSet, String> {
    tokio::time::timeout(FETCH_TIMEOUT, get(url, tls))
        .await
        .map_err(|_| format!("fetching JWKS {url} timed out after {FETCH_TIMEOUT:?}"))?
}

/// `(https, authority, host, port, path)` of an `http(s)://` URL.
fn split(url: &str) -> Result<(bool, &str, &str, u16, &str), String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => {
            return Err(format!(
                "jwksUri {url}: only http:// and https:// URLs can be fetched"
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if https { 443 } else { 80 };
    // `[v6]:port`, `host:port`, or no port.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (
            h,
            p.parse()
                .map_err(|_| format!("jwksUri {url}: bad port {p:?}"))?,
        ),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("jwksUri {url}: no host"));
    }
    Ok((https, authority, host, port, path))
}

async fn get(
    url: &str,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
) -> Result<JwkSet, String> {
    let (https, authority, host, port, path) = split(url)?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port} for JWKS failed: {e}"))?;
    if !https {
        return request(tcp, url, authority, path).await;
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("jwksUri {url}: bad host name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(tls()?)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {authority} for JWKS failed: {e}"))?;
    request(tls, url, authority, path).await
}

async fn request<S>(io: S, url: &str, authority: &str, path: &str) -> Result<JwkSet, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake with {authority} failed: {e}"))?;
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
    let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading {url} failed (over {MAX_JWKS_BYTES} bytes?): {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not a JWKS document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        assert_eq!(
            split("https://issuer.example/keys").unwrap(),
            (true, "issuer.example", "issuer.example", 443, "/keys")
        );
        assert_eq!(
            split("http://10.1.0.2:8080").unwrap(),
            (false, "10.1.0.2:8080", "10.1.0.2", 8080, "/")
        );
        assert_eq!(
            split("https://[::1]:8443/j").unwrap(),
            (true, "[::1]:8443", "::1", 8443, "/j")
        );
        assert!(split("ftp://x/y").is_err());
        assert!(split("https://x:port/").is_err());
        assert!(split("https:///path").is_err());
    }

    #[test]
    fn an_unreadable_extra_ca_is_a_clear_error() {
        let e = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("--jwks-ca /nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(tls_config(Some(&bad)).is_err());
    }
}
