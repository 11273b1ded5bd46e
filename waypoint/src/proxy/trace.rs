//! Request identity across hops: `x-request-id` (kept, or a new UUID v4) and W3C trace context
//! (`traceparent`: the trace id is kept, each hop gets a new span id whose parent is the caller's).

use http::HeaderValue;
use http::header::{HeaderMap, HeaderName};

/// `x-request-id`.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The same names, parsed once.
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);
const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);

/// The trace context of one request as the waypoint forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The request id.
    pub request_id: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// The waypoint's span id (16 hex digits), sent upstream as the parent.
    pub span_id: String,
    /// The caller's span id, if it sent one.
    pub parent_id: Option<String>,
    /// Trace flags (2 hex digits).
    pub flags: String,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lower-case hex digits (no per-digit formatting: this runs per request).
fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A random UUID v4 in its canonical text form.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, group) in [&b[..4], &b[4..6], &b[6..8], &b[8..10], &b[10..]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            s.push('-');
        }
        push_hex(&mut s, group);
    }
    s
}

/// Parses `traceparent` (`00-<trace>-<parent>-<flags>`); `None` when absent or malformed
/// (garbage is replaced, never forwarded).
fn parse_traceparent(v: &str) -> Option<(String, String, String)> {
    let mut it = v.trim().split('-');
    let (ver, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let valid = is_hex(ver, 2)
        && ver != "ff"
        && is_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && is_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && is_hex(flags, 2);
    valid.then(|| (trace.to_owned(), parent.to_owned(), flags.to_owned()))
}

impl Trace {
    /// Reads the incoming headers and writes the outgoing `x-request-id` and `traceparent`.
    pub fn apply(headers: &mut HeaderMap) -> Self {
        let kept = headers
            .get(&REQUEST_ID_NAME)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let new_id = kept.is_none();
        let request_id = kept.unwrap_or_else(uuid_v4);
        let incoming = headers
            .get(&TRACEPARENT_NAME)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let span_id = hex(&rand::random::<[u8; 8]>());
        let (trace_id, parent_id, flags) = match incoming {
            Some((t, p, f)) => (t, Some(p), f),
            None => (hex(&rand::random::<[u8; 16]>()), None, "01".to_owned()),
        };
        let t = Self {
            request_id,
            trace_id,
            span_id,
            parent_id,
            flags,
        };
        if new_id && let Ok(v) = HeaderValue::from_str(&t.request_id) {
            headers.insert(REQUEST_ID_NAME, v);
        }
        if let Ok(v) = HeaderValue::from_str(&t.traceparent()) {
            headers.insert(TRACEPARENT_NAME, v);
        }
        t
    }

    /// The `traceparent` sent upstream.
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        for part in ["00-", &self.trace_id, "-", &self.span_id, "-", &self.flags] {
            s.push_str(part);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_trace_is_continued_with_a_new_span() {
        let mut h = HeaderMap::new();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(parent));
        h.insert(REQUEST_ID, HeaderValue::from_static("abc"));
        let t = Trace::apply(&mut h);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert_eq!(h[REQUEST_ID], "abc");
        let out = h[TRACEPARENT].to_str().unwrap();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        assert_ne!(out, parent);
    }

    #[test]
    fn missing_or_garbage_context_starts_a_new_trace() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let t = Trace::apply(&mut h);
        assert!(t.parent_id.is_none());
        assert!(is_hex(&t.trace_id, 32) && is_hex(&t.span_id, 16));
        let id = h[REQUEST_ID].to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "UUID version 4: {id}");
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(
            id.bytes()
                .all(|b| b == b'-' || is_hex(&(b as char).to_string(), 1))
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
