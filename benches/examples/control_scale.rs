//! control at the issue's scale (issue 4): 10,000 pods / 1,000 services / 1,000 policies on 100 nodes.
//!
//! ```sh
//! nice -n 19 cargo run -p mesh-benches --release --example control_scale -- [--nodes 100] [--changes 5]
//! ```
//!
//! Measures, in one run:
//! - full translation: `Index::replace_all` of the fixture's parsed objects, in this process;
//! - one pod change, in this process: `Index::apply` and the deltas of every node's stream (`xds::delta`);
//! - a real `mesh-control serve` (this binary re-executed with `__serve`, which runs the same
//!   `mesh_control::app::serve` as the `mesh-control` binary) fed the fixture through its file source, with one
//!   ztunnel stream per node over real gRPC + TLS: time until every stream got its first config, control's
//!   VmRSS/VmHWM from `/proc`, and for each pod change (a rewritten one-pod file) the time until every stream
//!   received the delta (includes the file source's poll period, `--poll-ms`);
//! - a ztunnel's memory for the config: node-1's stream is the real `mesh_xds::client::ConfigClient` with a sink
//!   holding a `ConfigSnapshot`, as in ztunnel; the bytes of that snapshot and of the client's resource
//!   versions are counted by this binary's counting allocator (the method of `control/tests/footprint.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mesh_api::ConfigSnapshot;
use mesh_control::auth::{Caller, LocalTokens};
use mesh_control::index::{Change, Index};
use mesh_control::objects::Object;
use mesh_control::translate::Options;
use mesh_control::xds::view::Subscriber;
use mesh_identity::TrustBundle;
use mesh_xds::channel::ControlTarget;
use mesh_xds::client::{ConfigSink, Received};
use mesh_xds::pb;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PODS: usize = 10_000;
const SERVICES: usize = 1_000;
const POLICIES: usize = 1_000;
const NAMESPACES: usize = 50;
/// The pod whose changes are measured (on node-42).
const CHANGED: usize = 42;

/// Options of the control benchmark.
#[derive(Debug, Parser)]
struct Opts {
    /// Nodes (one ztunnel stream each); pods are spread over them.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pod changes to time through the real server.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Poll period of control's file source, in milliseconds.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
}

fn pod(i: usize, nodes: usize, version: &str) -> Value {
    let app = format!("app-{}", i % SERVICES);
    json!({"apiVersion": "v1", "kind": "Pod",
      "metadata": {"name": format!("pod-{i}"), "namespace": format!("ns-{}", i % NAMESPACES), "uid": format!("uid-{i}"),
                   "labels": {"app": app, "version": version},
                   "annotations": {"ambient.istio.io/redirection": "enabled"}},
      "spec": {"nodeName": format!("node-{}", i % nodes), "serviceAccountName": app, "containers": [{"name": "c"}]},
      "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)}})
}

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
      "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
      "spec": {"clusterIP": format!("10.96.{}.{}", i / 256, i % 256),
               "selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn policy(i: usize) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
      "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
      "spec": {"selector": {"matchLabels": {"app": format!("app-{i}")}},
               "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/ns-0/sa/app-{i}")]}}]}]}})
}

fn fixture(nodes: usize) -> Vec<Value> {
    (0..PODS)
        .map(|i| pod(i, nodes, "v1"))
        .chain((0..SERVICES).map(service))
        .chain((0..POLICIES).map(policy))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Figures of the in-process measures.
struct InProcess {
    full_ms: f64,
    apply_ms: f64,
    deltas_ms: f64,
    objects_mib: f64,
    index_mib: f64,
}

/// Full translation (median of 3) and one change (index + every node's delta), in this process; the heap of the
/// parsed objects and of the index (objects shared with it + resources + change log).
fn in_process(nodes: usize) -> anyhow::Result<InProcess> {
    let objects = || -> anyhow::Result<Vec<Object>> {
        fixture(nodes)
            .into_iter()
            .map(|v| Object::from_value(0, v).context("fixture object"))
            .collect()
    };
    let mut full = Vec::new();
    for _ in 0..3 {
        let objs = objects()?;
        let mut index = Index::new(Options::default());
        let start = Instant::now();
        let changed = index.replace_all(objs);
        full.push(ms(start.elapsed()));
        if changed.len() != PODS + SERVICES + POLICIES {
            bail!("translation produced {} resources", changed.len());
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    let objs = objects()?;
    let objects_mib = mib((LIVE.load(Ordering::Relaxed) - before) as f64);
    let mut index = Index::new(Options::default());
    index.replace_all(objs);
    let index_mib = mib((LIVE.load(Ordering::Relaxed) - before) as f64);
    let mut streams: Vec<_> = (0..nodes)
        .map(|n| {
            let sub = Subscriber::Node(format!("node-{n}"));
            let (mut sent, mut undo, mut last) = (Default::default(), Default::default(), None);
            mesh_control::xds::delta(&index, &sub, &mut sent, &mut undo, &mut last, true);
            (sub, sent, undo, last)
        })
        .collect();
    let start = Instant::now();
    index.apply([Change::Upsert(Object::from_value(
        0,
        pod(CHANGED, nodes, "v2"),
    )?)]);
    let apply = start.elapsed();
    let mut reached = 0;
    for (sub, sent, undo, last) in &mut streams {
        undo.clear();
        if mesh_control::xds::delta(&index, sub, sent, undo, last, false).is_some() {
            reached += 1;
        }
    }
    let all = start.elapsed();
    if reached != nodes {
        bail!("the change reached {reached} of {nodes} node views");
    }
    Ok(InProcess {
        full_ms: median(full),
        apply_ms: ms(apply),
        deltas_ms: ms(all),
        objects_mib,
        index_mib,
    })
}

/// `mesh-control serve` in this process (the child side of the re-exec).
fn serve_child(args: Vec<String>) -> anyhow::Result<()> {
    use clap::Parser as _;
    let mesh_control::config::Command::Serve(config) =
        mesh_control::config::Command::try_parse_from(
            std::iter::once("mesh-control".to_string()).chain(args),
        )?
    else {
        bail!("expected serve");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The parent's requests on stdin: `HEAP` -> the bytes this process has allocated and not freed (the counting
    // allocator), to compare with its RSS; end of input -> exit (so that a wrapper such as heaptrack sees a normal
    // end and writes its data).
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("HEAP") => println!("HEAP {}", LIVE.load(Ordering::Relaxed)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok(addr) = rx.await {
                println!("READY {addr}");
            }
        });
        mesh_control::app::serve(*config, CancellationToken::new(), Some(tx)).await
    })
}

fn write_docs(path: &Path, docs: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&d.to_string());
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context("rename")?;
    Ok(())
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{field} of {pid}"))
}

/// What a stream saw: node index, arrival time, whether the response had the changed pod.
type Seen = (usize, Instant, bool);

/// One ztunnel stream at the protocol level: ACKs every response and reports it.
async fn raw_stream(
    channel: tonic::transport::Channel,
    token: String,
    node: usize,
    seen: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::ConfigRequest {
        node: format!("node-{node}"),
        kind: mesh_xds::KIND_ZTUNNEL.into(),
        accepts_parts: true,
        ..Default::default()
    })
    .await?;
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let req = mesh_xds::with_token(tonic::Request::new(outbound), &token)?;
    let mut inbound = pb::config_discovery_client::ConfigDiscoveryClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .stream(req)
        .await?
        .into_inner();
    let changed = format!("workload/uid-{CHANGED}");
    // Whether a part of the response being received had the changed pod; a response counts when its last part
    // arrived (as the real client applies it then).
    let mut has = false;
    while let Some(resp) = inbound.message().await? {
        let at = Instant::now();
        has |= resp.resources.iter().any(|r| r.name == changed);
        if !resp.more {
            let _ = seen.send((node, at, std::mem::take(&mut has)));
        }
        tx.send(pb::ConfigRequest {
            response_nonce: resp.nonce,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// ztunnel's sink: every config becomes a `ConfigSnapshot` (see `ztunnel::state::ControlSink`).
struct SnapshotSink {
    snapshot: Mutex<Arc<ConfigSnapshot>>,
    applied: tokio::sync::watch::Sender<u64>,
}

impl ConfigSink for SnapshotSink {
    fn current(&self) -> Received {
        let snap = self.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        Received {
            parts: snap.parts().clone(),
            l7_objects: Default::default(),
        }
    }
    fn apply(&self, config: Received) -> Result<(), String> {
        let snapshot = ConfigSnapshot::new(config.parts).map_err(|e| e.to_string())?;
        if let Ok(mut s) = self.snapshot.lock() {
            *s = Arc::new(snapshot);
        }
        self.applied.send_modify(|n| *n += 1);
        Ok(())
    }
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // End of input asks the child to exit; a child that does not within 5 s is killed.
        drop(self.0.stdin.take());
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The control process's live heap (its counting allocator), in MiB.
fn child_heap(
    stdin: &mut std::process::ChildStdin,
    stdout: &mut impl BufRead,
) -> anyhow::Result<f64> {
    use std::io::Write as _;
    writeln!(stdin, "HEAP")?;
    stdin.flush()?;
    let bytes: f64 = read_tagged(stdout, "HEAP ")
        .context("control's heap")?
        .parse()?;
    Ok(mib(bytes))
}

/// The rest of the first line of `input` that starts with `tag` (other lines are skipped).
fn read_tagged(input: &mut impl BufRead, tag: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            bail!("no line starting with {tag:?}");
        }
        if let Some(rest) = line.trim().strip_prefix(tag) {
            return Ok(rest.to_string());
        }
    }
}

struct ServerFigures {
    first_all_ms: f64,
    rss_mib: f64,
    heap_mib: f64,
    hwm_mib: f64,
    change_ms: Vec<f64>,
    real_client_ms: Vec<f64>,
    snapshot_mib: f64,
    versions_mib: f64,
}

fn real_server(opts: &Opts) -> anyhow::Result<ServerFigures> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config");
    std::fs::create_dir(&config)?;
    let nodes = opts.nodes;
    write_docs(
        &config.join("pods.yaml"),
        (0..PODS)
            .filter(|i| *i != CHANGED)
            .map(|i| pod(i, nodes, "v1")),
    )?;
    write_docs(
        &config.join("pod-changed.yaml"),
        std::iter::once(pod(CHANGED, nodes, "v1")),
    )?;
    write_docs(&config.join("services.yaml"), (0..SERVICES).map(service))?;
    write_docs(&config.join("policies.yaml"), (0..POLICIES).map(policy))?;
    let key = dir.path().join("token.key");
    // CONTROL_SCALE_WRAPPER: a command to run the control process under (e.g. `heaptrack -o /tmp/control`).
    let wrapper: Vec<String> = std::env::var("CONTROL_SCALE_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let exe = std::env::current_exe()?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let mut child = cmd
        .arg("__serve")
        .arg("serve")
        .args(["--config-dir".as_ref(), config.as_os_str()])
        .args(["--ca-dir".as_ref(), dir.path().join("ca").as_os_str()])
        .args(["--token-key".as_ref(), key.as_os_str()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll",
            &format!("{}", opts.poll_ms as f64 / 1000.0),
        ])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start the control process")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut child = ChildGuard(child);
    let pid = child.0.id();
    let mut stdin = child.0.stdin.take().context("stdin")?;
    let mut stdout = std::io::BufReader::new(stdout);
    // A wrapper may print lines of its own first.
    let addr: std::net::SocketAddr = read_tagged(&mut stdout, "READY ")
        .context("control did not start")?
        .parse()?;
    let tokens = LocalTokens::load_or_create(&key)?;
    let roots = std::fs::read(dir.path().join("ca/root-cert.pem"))?;
    let target = ControlTarget {
        addr,
        roots: TrustBundle::from_pem(&roots)?,
        identity: "spiffe://cluster.local/ns/istio-system/sa/mesh-control".parse()?,
    };
    let token = |node: usize| {
        tokens.issue(&Caller {
            namespace: "istio-system".into(),
            service_account: "ztunnel".into(),
            node: Some(format!("node-{node}")),
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = mesh_xds::channel::channel(&target)?;
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        // Node 1 is the real client (a ztunnel's code path); the others protocol-level streams.
        for node in (0..nodes).filter(|n| *n != 1) {
            let (channel, token, seen) = (channel.clone(), token(node), seen_tx.clone());
            tokio::spawn(async move {
                if let Err(e) = raw_stream(channel, token, node, seen).await {
                    eprintln!("stream of node-{node}: {e:#}");
                }
            });
        }
        let token_file = dir.path().join("token-node-1");
        std::fs::write(&token_file, token(1))?;
        let (applied, mut applied_rx) = tokio::sync::watch::channel(0u64);
        let sink = Arc::new(SnapshotSink {
            snapshot: Mutex::new(Arc::default()),
            applied,
        });
        let stop = CancellationToken::new();
        let client = mesh_xds::client::ConfigClient::new(
            channel.clone(),
            token_file,
            "node-1".into(),
            mesh_xds::KIND_ZTUNNEL,
        );
        tokio::spawn(client.run(sink.clone(), stop.clone()));
        let mut first = std::collections::BTreeSet::new();
        while first.len() < nodes - 1 {
            let (node, _, _) = tokio::time::timeout(Duration::from_secs(120), seen_rx.recv())
                .await
                .context("first configs")?
                .context("streams ended")?;
            first.insert(node);
        }
        tokio::time::timeout(Duration::from_secs(120), applied_rx.wait_for(|n| *n >= 1)).await??;
        let first_all_ms = ms(start.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_mib = proc_status_kib(pid, "VmRSS:")? / 1024.0;
        let heap_mib = child_heap(&mut stdin, &mut stdout)?;

        // A ztunnel's memory for this config: the snapshot the sink holds (rebuilt from the same parts so that
        // only its bytes are counted) and the client's versions (name -> 16-hex-digit version per resource).
        let held = sink.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        if held.workloads().count() != PODS {
            bail!(
                "the real client holds {} workloads",
                held.workloads().count()
            );
        }
        let before = LIVE.load(Ordering::Relaxed);
        let rebuilt =
            ConfigSnapshot::new(held.parts().clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let snapshot_mib = mib((LIVE.load(Ordering::Relaxed) - before) as f64);
        let before = LIVE.load(Ordering::Relaxed);
        let versions: std::collections::BTreeMap<String, String> =
            mesh_xds::convert::values_of(rebuilt.parts())
                .map(|(n, _)| (n, format!("{:016x}", 0u64)))
                .collect();
        let versions_mib = mib((LIVE.load(Ordering::Relaxed) - before) as f64);
        drop((rebuilt, versions, held));

        let mut change_ms = Vec::new();
        let mut real_client_ms = Vec::new();
        for k in 0..opts.changes {
            while seen_rx.try_recv().is_ok() {}
            let version = format!("v{}", k + 2);
            let applied_before = *applied_rx.borrow_and_update();
            let t0 = Instant::now();
            write_docs(
                &config.join("pod-changed.yaml"),
                std::iter::once(pod(CHANGED, nodes, &version)),
            )?;
            let mut got = std::collections::BTreeSet::new();
            let mut last = t0;
            while got.len() < nodes - 1 {
                let (node, at, has) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                    .await
                    .context("delta")?
                    .context("streams ended")?;
                if has && got.insert(node) {
                    last = last.max(at);
                }
            }
            change_ms.push(ms(last - t0));
            tokio::time::timeout(
                Duration::from_secs(30),
                applied_rx.wait_for(|n| *n > applied_before),
            )
            .await??;
            real_client_ms.push(ms(t0.elapsed()));
            let snap = sink.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
            let label = snap
                .workload(&format!("uid-{CHANGED}"))
                .and_then(|w| w.labels.get("version").cloned());
            if label.as_deref() != Some(version.as_str()) {
                bail!("the real client has version {label:?}, expected {version}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let hwm_mib = proc_status_kib(pid, "VmHWM:")? / 1024.0;
        stop.cancel();
        Ok(ServerFigures {
            first_all_ms,
            rss_mib,
            heap_mib,
            hwm_mib,
            change_ms,
            real_client_ms,
            snapshot_mib,
            versions_mib,
        })
    })
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__serve") {
        return serve_child(args.split_off(2));
    }
    let opts = Opts::parse();
    if opts.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    let InProcess {
        full_ms,
        apply_ms,
        deltas_ms,
        objects_mib,
        index_mib,
    } = in_process(opts.nodes)?;
    let s = real_server(&opts)?;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "control at scale: {PODS} pods, {SERVICES} services, {POLICIES} policies, {} nodes",
        opts.nodes
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| full translation (in process, median of 3) | {full_ms:.0} ms | < 1 s |");
    println!("| one pod change: index update (in process) | {apply_ms:.2} ms | |");
    println!(
        "| one pod change: index + deltas of all {} node views (in process) | {deltas_ms:.2} ms | |",
        opts.nodes
    );
    println!(
        "| one pod change -> delta received by all {} other ztunnel streams (real server, gRPC+TLS; includes the {} ms file poll), median / max of {} | {:.0} / {:.0} ms | < 100 ms |",
        opts.nodes - 1,
        opts.poll_ms,
        s.change_ms.len(),
        median(s.change_ms.clone()),
        max(&s.change_ms)
    );
    println!(
        "| same change applied by the real ztunnel client (decode + new ConfigSnapshot), median / max | {:.0} / {:.0} ms | |",
        median(s.real_client_ms.clone()),
        max(&s.real_client_ms)
    );
    println!(
        "| first full config to all {} streams after start | {:.0} ms | |",
        opts.nodes, s.first_all_ms
    );
    println!(
        "| control process VmRSS with {} streams / VmHWM at the end | {:.0} / {:.0} MiB | < 200 MiB |",
        opts.nodes, s.rss_mib, s.hwm_mib
    );
    println!(
        "| control process live heap at that time (its counting allocator) | {:.0} MiB | |",
        s.heap_mib
    );
    println!(
        "| control heap (in process, counting allocator): parsed objects / index with them | {objects_mib:.0} / {index_mib:.0} MiB | |"
    );
    println!(
        "| ztunnel: ConfigSnapshot + stream versions (counting allocator) | {:.1} + {:.1} = {:.1} MiB | < 10 MiB |",
        s.snapshot_mib,
        s.versions_mib,
        s.snapshot_mib + s.versions_mib
    );
    Ok(())
}
