//! Request bodies (streamed, or buffered so retries and mirrors can resend them) and a response
//! body wrapper that reports when the response is over (for metrics and the access log).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::local::full;
use crate::upstream::{Body, BoxError};

/// Largest request body buffered for retries and mirroring; larger bodies are streamed once
/// (no retry, no mirror).
pub const MAX_BUFFERED_BODY: u64 = 1024 * 1024;

/// A request body, replayable when buffered.
#[derive(Debug)]
pub enum RequestBody {
    /// Held in memory: can be sent any number of times.
    Buffered(Bytes),
    /// Not read yet: can be sent once.
    Streaming(Option<Incoming>),
}

/// Whether the head announces no body at all.
pub fn has_no_body(headers: &HeaderMap) -> bool {
    !headers.contains_key(TRANSFER_ENCODING)
        && headers
            .get(CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

impl RequestBody {
    /// Buffers the body when `replay` is wanted and it is announced small enough; otherwise
    /// leaves it to be streamed. A body without content is always "buffered" (empty).
    pub async fn prepare(
        body: Incoming,
        headers: &HeaderMap,
        replay: bool,
    ) -> Result<Self, BoxError> {
        if has_no_body(headers) {
            return Ok(Self::Buffered(Bytes::new()));
        }
        let small = content_length(headers).is_some_and(|n| n <= MAX_BUFFERED_BODY);
        if replay && small {
            let bytes = body.collect().await?.to_bytes();
            return Ok(Self::Buffered(bytes));
        }
        Ok(Self::Streaming(Some(body)))
    }

    /// Whether the body can be sent again.
    pub fn replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    /// The buffered bytes, if buffered.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Buffered(b) => Some(b),
            Self::Streaming(_) => None,
        }
    }

    /// A body to send, counting its bytes into `counter`; `None` when a streamed body was sent
    /// already.
    pub fn take(&mut self, counter: &Arc<AtomicU64>) -> Option<Body> {
        match self {
            Self::Buffered(b) => {
                counter.store(b.len() as u64, Ordering::Relaxed);
                Some(full(b.clone()))
            }
            Self::Streaming(s) => {
                let inner = s.take()?;
                Some(
                    Counted {
                        inner: inner.map_err(BoxError::from).boxed(),
                        counter: counter.clone(),
                        on_end: None,
                        grpc: None,
                    }
                    .boxed(),
                )
            }
        }
    }
}

/// Called once with the number of body bytes when a body ends or is dropped.
pub type OnEnd = Box<dyn FnOnce(u64) + Send + Sync>;

/// Where a body's `grpc-status` trailer is left for the end-of-request record.
pub type GrpcSlot = Arc<std::sync::Mutex<Option<String>>>;

/// A body that counts its data bytes and reports the total when it ends (or is dropped early).
pub struct Counted {
    inner: Body,
    counter: Arc<AtomicU64>,
    on_end: Option<OnEnd>,
    grpc: Option<GrpcSlot>,
}

impl Counted {
    /// Wraps `inner`; `on_end` gets the byte count once.
    pub fn new(inner: Body, on_end: OnEnd) -> Self {
        Self {
            inner,
            counter: Arc::new(AtomicU64::new(0)),
            on_end: Some(on_end),
            grpc: None,
        }
    }

    /// Also records the `grpc-status` trailer into `slot` (before `on_end` runs).
    pub fn with_grpc_slot(mut self, slot: GrpcSlot) -> Self {
        self.grpc = Some(slot);
        self
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(self.counter.load(Ordering::Relaxed));
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.counter.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                let status = frame
                    .trailers_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let (Some(st), Some(slot)) = (status, &self.grpc) {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(st);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn counted_bodies_report_their_size_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let body = Counted::new(full("hello"), Box::new(move |n| s.lock().unwrap().push(n)));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(*seen.lock().unwrap(), vec![5]);
        // Dropped before the end: reported at drop.
        let s = seen.clone();
        drop(Counted::new(
            full("abc"),
            Box::new(move |n| s.lock().unwrap().push(n)),
        ));
        assert_eq!(*seen.lock().unwrap(), vec![5, 0]);
    }

    #[test]
    fn bodiless_heads_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(has_no_body(&h));
        h.insert(CONTENT_LENGTH, "0".parse().unwrap());
        assert!(has_no_body(&h));
        h.insert(CONTENT_LENGTH, "3".parse().unwrap());
        assert!(!has_no_body(&h));
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(!has_no_body(&h));
    }
}
