use std::time::Duration;

use super::capture::Capture;
use super::*;

fn sample_record() -> AccessLog {
    let mut log = AccessLog::new(
        "10.0.0.5:41234".parse().expect("addr"),
        "10.0.1.7:9080".parse().expect("addr"),
        Direction::Outbound,
    );
    log.src_identity = Some("spiffe://cluster.local/ns/bookinfo/sa/productpage".into());
    log.dst_service = Some("reviews.bookinfo.svc.cluster.local".into());
    log.dst_workload = Some("reviews-v2".into());
    log.dst_identity = Some("spiffe://cluster.local/ns/bookinfo/sa/reviews".into());
    log.bytes_sent = 120;
    log.bytes_recv = 3400;
    log.duration = Duration::from_millis(42);
    log
}

fn emit_json(log: &AccessLog) -> Vec<serde_json::Value> {
    json_records(|| log.emit())
}

/// The JSON lines that `write` logs.
fn json_records(write: impl FnOnce()) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let writer = capture.clone();
    let (subscriber, _handle) =
        build_subscriber(LogFormat::Json, "info", move || writer.clone(), false).expect("build");
    tracing::subscriber::with_default(subscriber, write);
    capture
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn access_log_json_has_the_contract_fields() {
    let records = emit_json(&sample_record());
    assert_eq!(records.len(), 1, "exactly one record: {records:?}");
    let r = &records[0];
    assert_eq!(r["target"], "access");
    assert_eq!(r["level"], "INFO");
    assert_eq!(r["src.addr"], "10.0.0.5:41234");
    assert_eq!(
        r["src.identity"],
        "spiffe://cluster.local/ns/bookinfo/sa/productpage"
    );
    assert_eq!(r["dst.addr"], "10.0.1.7:9080");
    assert_eq!(r["dst.service"], "reviews.bookinfo.svc.cluster.local");
    assert_eq!(r["dst.workload"], "reviews-v2");
    assert_eq!(r["direction"], "outbound");
    assert_eq!(r["bytes_sent"], 120);
    assert_eq!(r["bytes_recv"], 3400);
    assert_eq!(r["duration"], "42ms");
    assert!(r.get("error").is_none(), "no error field on success: {r}");
    assert!(
        r.get("src.workload").is_none(),
        "absent fields are left out: {r}"
    );
}

#[test]
fn finish_sets_the_duration_and_the_outcome_and_writes_one_record() {
    let start = std::time::Instant::now() - Duration::from_millis(30);
    let ok = json_records(|| sample_record().finish(start, Ok::<(), String>(())));
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["level"], "INFO");
    assert!(ok[0].get("error").is_none(), "{:?}", ok[0]);
    let ms: u64 = ok[0]["duration"]
        .as_str()
        .and_then(|d| d.strip_suffix("ms"))
        .and_then(|d| d.parse().ok())
        .expect("duration in ms");
    assert!(ms >= 30, "duration measured from start: {ms} ms");
    let failed = json_records(|| sample_record().finish(start, Err("upstream refused")));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["error"], "upstream refused");
}

#[test]
fn failed_connection_is_a_warning_with_error_and_reason() {
    let mut log = sample_record();
    log.direction = Direction::Inbound;
    log.error = Some("connection denied by policy".into());
    log.reason = Some("denied by bookinfo/deny-reviews".into());
    let records = emit_json(&log);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["level"], "WARN");
    assert_eq!(r["direction"], "inbound");
    assert_eq!(r["error"], "connection denied by policy");
    assert_eq!(r["reason"], "denied by bookinfo/deny-reviews");
}

#[test]
fn filter_reload_changes_what_is_logged() {
    let capture = Capture::default();
    let writer = capture.clone();
    let (subscriber, handle) =
        build_subscriber(LogFormat::Text, "info", move || writer.clone(), false).expect("build");
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("hidden-before-reload");
        assert_eq!(handle.current().expect("current"), "info");
        handle.set("debug").expect("reload");
        tracing::debug!("shown-after-reload");

        handle
            .set("ztunnel=trace,warn")
            .expect("per-target directives");
        tracing::info!(target: "other", "hidden-by-target-filter");
        tracing::trace!(target: "ztunnel::proxy", "shown-by-target-filter");

        let bad = handle.set("ztunnel=loud");
        assert!(
            matches!(bad, Err(TelemetryError::InvalidFilter { .. })),
            "{bad:?}"
        );
        let current = handle.current().expect("current");
        assert!(
            current.contains("ztunnel=trace"),
            "old filter kept: {current}"
        );
    });
    let text = capture.lines().join("\n");
    assert!(!text.contains("hidden-before-reload"), "{text}");
    assert!(text.contains("shown-after-reload"), "{text}");
    assert!(!text.contains("hidden-by-target-filter"), "{text}");
    assert!(text.contains("shown-by-target-filter"), "{text}");
}

#[test]
fn invalid_initial_filter_is_rejected() {
    let res = build_subscriber(LogFormat::Json, "ztunnel=loud", std::io::sink, false);
    assert!(matches!(res, Err(TelemetryError::InvalidFilter { .. })));
}
