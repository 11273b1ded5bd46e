//! One blocking HTTP/1.1 keep-alive connection of the load client: writes a prepared request and
//! reads one response (Content-Length or chunked body).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Errors of one exchange.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before a whole response arrived.
    #[error("connection closed after {0} bytes of a response")]
    Closed(usize),
    /// The bytes are not an HTTP/1.1 response.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest wait for any read or write: a hung server must not hang the benchmark.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection and the bytes read past the last response.
pub struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `to` (TCP_NODELAY, I/O timeouts).
    pub fn connect(to: SocketAddr) -> Result<Conn, WireError> {
        let tcp = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            tcp,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` (a whole serialized request) and reads the response; its status code.
    pub fn exchange(&mut self, request: &[u8]) -> Result<u16, WireError> {
        self.tcp.write_all(request)?;
        self.read_response()
    }

    /// Reads more bytes into the buffer; fails when the peer closed.
    fn fill(&mut self) -> Result<(), WireError> {
        let mut chunk = [0u8; 8192];
        let n = self.tcp.read(&mut chunk)?;
        if n == 0 {
            return Err(WireError::Closed(self.buf.len()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_response(&mut self) -> Result<u16, WireError> {
        let (status, head_len, framing) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(WireError::Malformed(format!(
                    "no end of the head in {MAX_HEAD} bytes"
                )));
            }
            self.fill()?;
        };
        let end = match framing {
            Framing::Length(n) => {
                while self.buf.len() < head_len + n {
                    self.fill()?;
                }
                head_len + n
            }
            Framing::Chunked => loop {
                match chunked_end(&self.buf, head_len)? {
                    Some(end) => break end,
                    None => self.fill()?,
                }
            },
        };
        self.buf.drain(..end);
        Ok(status)
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// (status, head length, framing) once `buf` holds a whole response head.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, Framing)>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    let status = resp
        .code
        .ok_or_else(|| WireError::Malformed("no status".into()))?;
    let mut framing = Framing::Length(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
        {
            framing = Framing::Chunked;
            break;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| WireError::Malformed("bad content-length".into()))?;
            framing = Framing::Length(n);
        }
    }
    Ok(Some((status, head_len, framing)))
}

/// The end of a chunked body starting at `pos`, once `buf` holds all of it (trailers included).
fn chunked_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, WireError> {
    loop {
        let (line, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(WireError::Malformed("bad chunk size".into())),
        };
        pos += line;
        if size == 0 {
            // Trailers (usually none), then an empty line.
            let rest = &buf[pos..];
            if rest.starts_with(b"\r\n") {
                return Ok(Some(pos + 2));
            }
            return Ok(rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| pos + i + 4));
        }
        let size =
            usize::try_from(size).map_err(|_| WireError::Malformed("chunk too large".into()))?;
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// A `POST` to `path` with `Host: host` and a body of `body_len` bytes of `x`.
pub fn request(host: &str, path: &str, body_len: usize) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/octet-stream\r\n\
         content-length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    r.resize(r.len() + body_len, b'x');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_and_framing() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            parse_head(r).expect("parses"),
            Some((200, r.len() - 5, Framing::Length(5)))
        );
        let r = b"HTTP/1.1 503 x\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(
            parse_head(r).expect("parses"),
            Some((503, r.len(), Framing::Chunked))
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").expect("partial"), None);
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_end_after_the_last_chunk() {
        let body = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(chunked_end(body, 0).expect("ok"), Some(body.len() - 4));
        assert_eq!(chunked_end(&body[..10], 0).expect("ok"), None);
        let trailers = b"0\r\nx-a: 1\r\n\r\n";
        assert_eq!(chunked_end(trailers, 0).expect("ok"), Some(trailers.len()));
        assert!(chunked_end(b"zz\r\n", 0).is_err());
    }

    #[test]
    fn requests_carry_the_body_length() {
        let r = request("10.96.0.20:8080", "/bench", 1024);
        let text = String::from_utf8_lossy(&r);
        assert!(text.starts_with("POST /bench HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("content-length: 1024\r\n\r\n"), "{text}");
        assert!(r.ends_with(&[b'x'; 1024]));
    }

    #[test]
    fn a_real_server_answers_on_a_kept_alive_connection() {
        use std::io::BufRead;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut w = s;
            for i in 0..2 {
                let mut line = String::new();
                let mut len = 0usize;
                loop {
                    line.clear();
                    r.read_line(&mut line).expect("line");
                    if let Some(v) = line.strip_prefix("content-length: ") {
                        len = v.trim().parse().expect("len");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).expect("body");
                let answer = if i == 0 {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned()
                } else {
                    "HTTP/1.1 404 No\r\ntransfer-encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
                        .to_owned()
                };
                w.write_all(answer.as_bytes()).expect("write");
            }
        });
        let mut c = Conn::connect(addr).expect("connect");
        let req = request("x", "/", 100);
        assert_eq!(c.exchange(&req).expect("first"), 200);
        assert_eq!(c.exchange(&req).expect("second"), 404);
        server.join().expect("server");
        assert!(matches!(
            c.exchange(&req),
            Err(WireError::Closed(0) | WireError::Io(_))
        ));
    }
}
