//! Request-smuggling guard for HTTP/1.1 tunnels: reads every request head as it passes (before
//! hyper parses it) and turns a head with ambiguous framing (both `Transfer-Encoding` and
//! `Content-Length`, or `Content-Length` values that disagree) into a malformed one, so hyper
//! answers 400 and closes the connection (Envoy's behaviour). Bodies are skipped by their framing
//! (length or chunks) to find the next head.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Heads longer than this are left to hyper (it answers 431).
const MAX_HEAD: usize = super::MAX_HEADER_BYTES;
/// What a rejected head is replaced with: not a valid request line, so hyper answers 400.
const POISON: &[u8] = b"\x00 / HTTP/1.1\r\n\r\n";

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping `n` body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data plus its CRLF.
    ChunkData(u64),
    /// Reading trailers until an empty line; the Vec holds the current line.
    Trailers(Vec<u8>),
    /// No longer inspecting (rejected, or a head too large for us).
    Off,
}

/// Wraps the downstream side of an HTTP/1.1 connection.
#[derive(Debug)]
pub struct H1Guard<S> {
    inner: S,
    state: State,
    /// Bytes to hand out before reading more (a released head, or the poison).
    pending: Vec<u8>,
    /// How many of `pending` were handed out already.
    sent: usize,
}

/// What a complete head says about its body.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Ambiguous,
}

fn framing(head: &[u8]) -> Framing {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        // Malformed or too many headers: hyper will judge; nothing to skip.
        return Framing::None;
    }
    let mut te = None;
    let mut cl: Option<&[u8]> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if cl.is_some_and(|c| c != h.value) {
                return Framing::Ambiguous;
            }
            cl = Some(h.value);
        }
    }
    match (te, cl) {
        (Some(_), Some(_)) => Framing::Ambiguous,
        (Some(_), None) => Framing::Chunked,
        (None, Some(v)) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map_or(Framing::None, Framing::Length),
        (None, None) => Framing::None,
    }
}

impl<S> H1Guard<S> {
    /// Guards `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Head(Vec::new()),
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// Feeds bytes read from the client; returns what may be passed on now.
    fn feed(&mut self, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        while !data.is_empty() {
            match &mut self.state {
                State::Off => {
                    out.extend_from_slice(data);
                    break;
                }
                State::Head(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(data);
                    let Some(end) = find(buf, b"\r\n\r\n") else {
                        if buf.len() > MAX_HEAD {
                            out.append(buf);
                            self.state = State::Off;
                        }
                        break;
                    };
                    let head_len = end + 4;
                    data = &data[head_len - before..];
                    let head = std::mem::take(buf);
                    if head.starts_with(b"PRI * HTTP/2.0") {
                        // HTTP/2 prior knowledge: framing is HTTP/2's own.
                        // `head` holds everything read so far, the rest of `data` included.
                        out.extend_from_slice(&head);
                        self.state = State::Off;
                        break;
                    }
                    match framing(&head[..head_len]) {
                        Framing::Ambiguous => {
                            tracing::info!(
                                "ambiguous request framing (Content-Length with Transfer-Encoding, or conflicting lengths): rejected"
                            );
                            out.extend_from_slice(POISON);
                            self.state = State::Off;
                            return out;
                        }
                        Framing::None | Framing::Length(0) => self.state = State::Head(Vec::new()),
                        Framing::Length(n) => self.state = State::Body(n),
                        Framing::Chunked => self.state = State::ChunkSize(Vec::new()),
                    }
                    out.extend_from_slice(&head[..head_len]);
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = match self.state {
                            State::Body(_) => State::Head(Vec::new()),
                            _ => State::ChunkSize(Vec::new()),
                        };
                    }
                }
                State::ChunkSize(line) | State::Trailers(line) => {
                    let Some(i) = data.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(data);
                        out.extend_from_slice(data);
                        break;
                    };
                    line.extend_from_slice(&data[..=i]);
                    out.extend_from_slice(&data[..=i]);
                    data = &data[i + 1..];
                    let text = String::from_utf8_lossy(line).trim().to_owned();
                    let trailers = matches!(self.state, State::Trailers(_));
                    self.state = if trailers {
                        if text.is_empty() {
                            State::Head(Vec::new())
                        } else {
                            State::Trailers(Vec::new())
                        }
                    } else {
                        let size = text.split(';').next().unwrap_or("").trim();
                        match u64::from_str_radix(size, 16) {
                            Ok(0) => State::Trailers(Vec::new()),
                            // Data plus the CRLF that ends it.
                            Ok(n) => State::ChunkData(n + 2),
                            // Broken chunking: hyper will fail the body; stop inspecting.
                            Err(_) => State::Off,
                        }
                    };
                }
            }
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes read from the client per call.
const READ_CHUNK: usize = 16 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for H1Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.sent < me.pending.len() {
                let rest = &me.pending[me.sent..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                me.sent += n;
                if me.sent == me.pending.len() {
                    me.pending.clear();
                    me.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if matches!(me.state, State::Off) {
                // No longer inspecting: straight into the caller's buffer.
                return Pin::new(&mut me.inner).poll_read(cx, buf);
            }
            // Not zeroed: the inner stream initialises what it fills (a zeroed 16 KiB buffer
            // per read was a quarter of the waypoint's instructions per request).
            let mut tmp = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut tmp);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // EOF: release a partial head so hyper sees what the client sent.
                    if let State::Head(h) = &mut me.state {
                        me.pending = std::mem::take(h);
                        me.sent = 0;
                        me.state = State::Off;
                        if !me.pending.is_empty() {
                            continue;
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    me.pending = me.feed(rb.filled());
                    me.sent = 0;
                    // Nothing released yet (a head still incomplete): read more.
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for H1Guard<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut g = H1Guard::new(());
        let mut out = Vec::new();
        for c in chunks {
            out.extend(g.feed(c));
        }
        out
    }

    #[test]
    fn normal_requests_pass_unchanged_even_in_small_pieces() {
        let stream = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        assert_eq!(run(&[stream]), stream.to_vec());
        let pieces: Vec<&[u8]> = stream.chunks(3).collect();
        assert_eq!(run(&pieces), stream.to_vec());
    }

    #[test]
    fn ambiguous_framing_is_poisoned_in_any_request_of_the_connection() {
        let smuggle = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n";
        assert_eq!(run(&[smuggle]), POISON.to_vec());
        let second = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        let out = run(&[second]);
        assert!(out.starts_with(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(out.ends_with(POISON));
        // Equal repeated lengths are fine.
        let same = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(run(&[same]), same.to_vec());
    }

    async fn read_through(chunks: &[&[u8]]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        for c in chunks {
            client.write_all(c).await.unwrap();
        }
        drop(client);
        let mut out = Vec::new();
        H1Guard::new(server).read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn reading_through_the_guard_passes_requests_and_poisons_smuggling() {
        let stream: &[u8] =
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(read_through(&[stream]).await, stream);
        let big = [b'x'; 40 * 1024];
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len());
        let got = read_through(&[head.as_bytes(), &big]).await;
        assert_eq!(got.len(), head.len() + big.len());
        assert!(got.ends_with(&big));
        let smuggle: &[u8] =
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(read_through(&[smuggle]).await, POISON);
        // After the HTTP/2 preface the guard stops inspecting; later bytes pass as they are.
        let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let frames = [0u8, 0, 4, 1, 0];
        let got = read_through(&[preface, &frames]).await;
        assert_eq!(got, [preface, &frames[..]].concat());
        // A partial head at EOF is released as it is.
        assert_eq!(read_through(&[b"GET / HT"]).await, b"GET / HT");
    }

    #[test]
    fn http2_prior_knowledge_passes_untouched() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04";
        assert_eq!(run(&[preface]), preface.to_vec());
    }

    #[test]
    fn a_smuggled_head_inside_a_body_is_not_inspected_as_a_head() {
        let inner = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let outer = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        assert_eq!(run(&[outer.as_bytes()]), outer.as_bytes().to_vec());
    }
}
