use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::telemetry::{LogFormat, build_subscriber};

/// Keeps what is written to it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    /// The lines written, each without its leading timestamp (checked to have the right shape).
    fn lines_without_time(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("utf-8");
        text.lines()
            .map(|line| {
                let (time, rest) = line.split_once(' ').expect("a timestamp, then the rest");
                assert_eq!(time.len(), 27, "{time}");
                assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
                rest.to_owned()
            })
            .collect()
    }
}

#[derive(Debug)]
struct Outer(Inner);
#[derive(Debug)]
struct Inner;

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot reach the \x1b[31mapp")
    }
}
impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
impl std::error::Error for Inner {}

/// Every kind of field and event the proxies log.
fn emit_all() {
    let addr: std::net::SocketAddr = "10.0.0.5:41234".parse().expect("addr");
    let conn = tracing::info_span!("conn", id = 7u64, src = %addr, dst = tracing::field::Empty);
    let _conn = conn.enter();
    conn.record("dst", tracing::field::display("10.0.1.7:9080"));
    tracing::info!("plain message");
    let inner = tracing::info_span!("inner");
    let _inner = inner.enter();
    let none: Option<&str> = None;
    tracing::event!(
        target: "access",
        tracing::Level::INFO,
        src.identity = Some("spiffe://cluster.local/ns/a/sa/b"),
        absent = none,
        quoted = "say \"hi\"\\",
        unicode = "café",
        control = "a\x1bb\ttab",
        negative = -42i64,
        zero = 0u64,
        big = u64::MAX,
        flag = true,
        ratio = 0.25f64,
        debug = ?vec![1, 2],
        display = %addr,
        r#type = "raw",
        "request complete"
    );
    let err = Outer(Inner);
    tracing::warn!(
        error = &err as &(dyn std::error::Error + 'static),
        "upstream failed"
    );
    tracing::error!("bell \x07 and c1 \u{85} in a message: {}", "arg");
    tracing::debug!(n = 1u64, "debug");
    // A `log` crate record, as the bridge to `log` turns it into an event.
    tracing_log::format_trace(
        &log::Record::builder()
            .args(format_args!("from log {}", 1))
            .level(log::Level::Warn)
            .target("rustls::conn")
            .module_path_static(Some("rustls::conn"))
            .file_static(Some("conn.rs"))
            .line(Some(12))
            .build(),
    )
    .expect("log record");
}

#[test]
fn text_lines_are_those_of_tracing_subscriber_without_colours() {
    let ours = Capture::default();
    let (subscriber, _handle) =
        build_subscriber(LogFormat::Text, "trace", ours.clone(), false).expect("build");
    tracing::subscriber::with_default(subscriber, emit_all);

    let reference = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(reference.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, emit_all);

    let ours = ours.lines_without_time();
    let reference = reference.lines_without_time();
    assert_eq!(ours.len(), 6, "{ours:#?}");
    assert_eq!(ours, reference);
    // And the reference really shows what matters (so equality is not of two empty outputs).
    assert!(ours[1].contains("conn{id=7 src=10.0.0.5:41234 dst=10.0.1.7:9080}:inner: access: "));
    assert!(ours[2].contains(r"cannot reach the \x1b[31mapp error.sources=[connection refused]"));
    assert!(ours[5].starts_with(" WARN conn{"), "{}", ours[5]);
    assert!(ours[5].ends_with("rustls::conn: from log 1"), "{}", ours[5]);
}

#[test]
fn timestamps_are_utc_with_microseconds() {
    let at = |secs: u64, micros: u64| {
        let mut s = String::new();
        write_timestamp(
            &mut s,
            UNIX_EPOCH + std::time::Duration::from_micros(secs * 1_000_000 + micros),
        )
        .expect("write");
        s
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
    assert_eq!(at(1_795_000_000, 999_999), "2026-11-18T11:06:40.999999Z");
    assert_eq!(at(4_102_444_799, 123_456), "2099-12-31T23:59:59.123456Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
}

#[test]
fn numbers_and_strings_match_their_debug_forms() {
    for v in [0u64, 9, 10, 4_294_967_296, u64::MAX] {
        let mut s = String::new();
        write_u64(&mut s, v).expect("write");
        assert_eq!(s, format!("{v:?}"));
    }
    for v in [
        "",
        "plain",
        "q\"uote",
        "back\\slash",
        "tab\t",
        "é",
        "\x1b[0m",
        "\u{85}",
    ] {
        let mut s = String::new();
        write_debug_str(&mut s, v).expect("write");
        assert_eq!(s, format!("{v:?}"));
    }
}
