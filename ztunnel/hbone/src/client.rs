//! HBONE client: open one tunnel (`CONNECT`) over an established HTTP/2 connection.
//! Most users want [`crate::Pool`], which also dials and reuses the connections.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderValue, Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::H2Config;
use crate::server::{BAGGAGE, FORWARDED, TRACEPARENT};
use crate::stream::H2Stream;

/// Errors of opening one tunnel.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The peer answered the `CONNECT` with a non-200 status (401/403 policy, 503 no
    /// upstream, 400 malformed, ...).
    #[error("HBONE peer refused the tunnel to {authority} with status {status}")]
    Refused {
        /// The target that was asked for.
        authority: SocketAddr,
        /// The peer's answer.
        status: StatusCode,
    },
    /// The HTTP/2 connection or stream failed before the answer arrived.
    #[error("HBONE CONNECT to {authority} failed on the HTTP/2 connection: {source}")]
    H2 {
        /// The target that was asked for.
        authority: SocketAddr,
        /// The h2 error.
        #[source]
        source: h2::Error,
    },
    /// A header value cannot be sent (for example a `traceparent` holding a newline).
    #[error("HBONE CONNECT header {name} has a value that cannot be sent")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
}

impl ConnectError {
    /// True when the request certainly was not processed by the peer, so it may be retried on
    /// another connection: the connection was going away or the stream was refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::H2 { source, .. } => {
                source.is_go_away()
                    || source.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || source.is_io()
            }
            _ => false,
        }
    }
}

/// What to ask for when opening a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    /// The final target, sent as `:authority` (`<ip>:<port>`, IPv6 in brackets).
    pub authority: SocketAddr,
    /// The original client, sent as `forwarded: for="<ip:port>"`.
    pub forwarded_for: Option<SocketAddr>,
    /// W3C trace context to propagate.
    pub traceparent: Option<String>,
    /// W3C baggage (workload metadata) to propagate.
    pub baggage: Option<String>,
}

impl TunnelRequest {
    /// A request for `authority` without optional headers.
    pub fn new(authority: SocketAddr) -> Self {
        Self {
            authority,
            forwarded_for: None,
            traceparent: None,
            baggage: None,
        }
    }

    /// The HTTP/2 request: `CONNECT` with only `:method` and `:authority` pseudo-headers.
    pub fn to_http(&self) -> Result<Request<()>, ConnectError> {
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        let authority = http::uri::Authority::try_from(self.authority.to_string())
            .map_err(|_| ConnectError::InvalidHeader { name: ":authority" })?;
        *req.uri_mut() = http::Uri::from(authority);
        let headers = req.headers_mut();
        if let Some(addr) = self.forwarded_for {
            let value = HeaderValue::try_from(format!("for=\"{addr}\""))
                .map_err(|_| ConnectError::InvalidHeader { name: FORWARDED })?;
            headers.insert(FORWARDED, value);
        }
        for (name, value) in [(TRACEPARENT, &self.traceparent), (BAGGAGE, &self.baggage)] {
            if let Some(v) = value {
                let value = HeaderValue::try_from(v.as_str())
                    .map_err(|_| ConnectError::InvalidHeader { name })?;
                headers.insert(name, value);
            }
        }
        Ok(req)
    }
}

/// Runs the client side of the HTTP/2 handshake on `io` (normally a TLS stream). The returned
/// connection must be polled (spawned) for the `SendRequest` to make progress.
pub async fn handshake<IO>(
    io: IO,
    cfg: &H2Config,
) -> Result<(SendRequest<Bytes>, h2::client::Connection<IO, Bytes>), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    cfg.client_builder().handshake(io).await
}

/// Opens one tunnel on the connection behind `sender` and waits for the `200`.
pub async fn connect(
    sender: &SendRequest<Bytes>,
    req: &TunnelRequest,
) -> Result<H2Stream, ConnectError> {
    let authority = req.authority;
    let h2_err = |source| ConnectError::H2 { authority, source };
    let request = req.to_http()?;
    let mut sender = sender.clone().ready().await.map_err(h2_err)?;
    let (response, send) = sender.send_request(request, false).map_err(h2_err)?;
    let response = response.await.map_err(h2_err)?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(ConnectError::Refused { authority, status });
    }
    Ok(H2Stream::new(send, response.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_headers() {
        let mut req = TunnelRequest::new("[fd00::5]:8080".parse().unwrap());
        req.forwarded_for = Some("10.0.0.1:4321".parse().unwrap());
        req.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let http = req.to_http().unwrap();
        assert_eq!(http.method(), Method::CONNECT);
        assert_eq!(http.uri().authority().unwrap().as_str(), "[fd00::5]:8080");
        assert_eq!(http.uri().path_and_query(), None);
        assert_eq!(http.headers()[FORWARDED], "for=\"10.0.0.1:4321\"");
        assert!(http.headers().contains_key(TRACEPARENT));
        assert!(!http.headers().contains_key(BAGGAGE));
    }

    #[test]
    fn bad_header_value_is_an_error() {
        let mut req = TunnelRequest::new("10.0.0.1:80".parse().unwrap());
        req.traceparent = Some("a\nb".into());
        assert!(matches!(
            req.to_http(),
            Err(ConnectError::InvalidHeader { name: TRACEPARENT })
        ));
    }
}
