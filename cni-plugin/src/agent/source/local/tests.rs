use std::sync::mpsc;

use super::*;
use crate::agent::Msg;

fn pod(uid: &str, node: &str) -> PodMeta {
    PodMeta {
        uid: uid.into(),
        name: uid.into(),
        namespace: "ns".into(),
        node_name: node.into(),
        ..PodMeta::default()
    }
}

fn ns(name: &str, mode: &str) -> NamespaceMeta {
    NamespaceMeta {
        name: name.into(),
        labels: [("istio.io/dataplane-mode".to_string(), mode.to_string())].into(),
    }
}

#[test]
fn diff_reports_only_changes_and_ignores_other_nodes() {
    let (mut pods, mut nss) = (HashMap::new(), HashMap::new());
    let state = LocalState {
        namespaces: vec![ns("ns", "ambient")],
        pods: vec![pod("a", "node-1"), pod("b", "node-2")],
    };
    let events = diff("node-1", state.clone(), &mut pods, &mut nss);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(diff("node-1", state, &mut pods, &mut nss).is_empty());
    let events = diff("node-1", LocalState::default(), &mut pods, &mut nss);
    assert_eq!(
        events,
        vec![
            SourceEvent::PodDeleted("a".into()),
            SourceEvent::NamespaceDeleted("ns".into())
        ]
    );
}

fn next_event(rx: &mpsc::Receiver<Msg>) -> SourceEvent {
    match rx
        .recv_timeout(Duration::from_secs(5))
        .expect("event in time")
    {
        Msg::Source(e) => e,
        _ => panic!("only source events expected"),
    }
}

#[test]
fn watches_the_file_keeps_state_on_garbage_and_writes_annotations() {
    let dir = tempfile::tempdir().expect("tmp");
    let (state_path, status_path) = (
        dir.path().join("cluster.yaml"),
        dir.path().join("status.json"),
    );
    let source = LocalSource::new(
        state_path.clone(),
        status_path.clone(),
        "node-1".into(),
        Duration::from_millis(10),
    );
    let (tx, rx) = mpsc::channel();
    source.start(EventSink::new(tx)).expect("start");
    let state = LocalState {
        namespaces: vec![ns("ns", "none")],
        pods: vec![pod("a", "node-1")],
    };
    state.write(&state_path).expect("write");
    let mut first = [next_event(&rx), next_event(&rx)];
    first.sort_by_key(|e| format!("{e:?}"));
    assert!(
        matches!(first[0], SourceEvent::Namespace(_)) && matches!(first[1], SourceEvent::Pod(_))
    );
    assert_eq!(next_event(&rx), SourceEvent::Synced);

    std::fs::write(&state_path, "pods: [ {{{ not yaml").expect("garbage");
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "garbage changes nothing");

    let relabelled = LocalState {
        namespaces: vec![ns("ns", "ambient")],
        ..state
    };
    relabelled.write(&state_path).expect("write");
    assert!(
        matches!(next_event(&rx), SourceEvent::Namespace(n) if n.labels["istio.io/dataplane-mode"] == "ambient")
    );

    source.set_redirection(&pod("a", "node-1"), true);
    let status: LocalStatus =
        serde_json::from_slice(&std::fs::read(&status_path).expect("status")).expect("json");
    assert_eq!(
        status.redirection.get("a").map(String::as_str),
        Some("enabled")
    );
    source.set_redirection(&pod("a", "node-1"), false);
    let status: LocalStatus =
        serde_json::from_slice(&std::fs::read(&status_path).expect("status")).expect("json");
    assert!(status.redirection.is_empty());
}
