//! The handoff protocol against a real ztunnel process, with this test playing the node agent: valid
//! requests open and close a pod's listeners; malformed ones get an error Ack and change nothing; a reconnect
//! snapshot releases pods it does not name; a vanished pod netns releases its listeners.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use mesh_api::handoff::{
    AgentRequest, PodInfo, Reply, SeqPacketConn, SeqPacketListener, ZtunnelMessage,
};
use mesh_identity::CertificateAuthority;
use mesh_testbed::mesh::{ZtunnelFiles, ztunnel_command};
use mesh_testbed::{Netns, Process, Topology};

const WAIT: Duration = Duration::from_secs(15);

struct Agent {
    listener: SeqPacketListener,
    conn: Option<SeqPacketConn>,
}

impl Agent {
    fn accept(&mut self) {
        let conn = self.listener.accept().expect("ztunnel connects");
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let (hello, fds) = conn.recv::<ZtunnelMessage>().expect("hello");
        assert!(matches!(
            Reply::from_message(hello, fds).unwrap(),
            Reply::Hello { .. }
        ));
        self.conn = Some(conn);
    }

    fn conn(&self) -> &SeqPacketConn {
        self.conn.as_ref().expect("connected")
    }

    /// Sends raw bytes with fds and returns the Ack's error text ("" = ok).
    fn request_raw(&self, bytes: &[u8], fds: &[&OwnedFd]) -> String {
        use std::os::fd::AsRawFd;
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.conn().send_raw(bytes, &raw).expect("send");
        self.ack()
    }

    fn request(&self, msg: &AgentRequest, fd: Option<&OwnedFd>) -> String {
        self.conn().send(msg, fd.map(|f| f.as_fd())).expect("send");
        self.ack()
    }

    fn ack(&self) -> String {
        let (msg, fds) = self.conn().recv::<ZtunnelMessage>().expect("ack");
        match Reply::from_message(msg, fds).expect("valid reply") {
            Reply::Ack(Ok(())) => String::new(),
            Reply::Ack(Err(e)) => e,
            other => panic!("expected Ack, got {other:?}"),
        }
    }
}

fn netns_fd(ns: &Netns) -> OwnedFd {
    std::fs::File::open(ns.path())
        .expect("open pod netns")
        .into()
}

fn listening(ns: &Netns) -> bool {
    ns.is_listening(15008).expect("ss in pod netns")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool, logs: &Process) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nztunnel log:\n{}",
            logs.stdout()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `/config_dump` entry of pod `uid` (null when ztunnel does not serve it).
fn pod_entry(node: &Netns, uid: &str) -> serde_json::Value {
    let out = node
        .run_timeout("curl", &["-s", "127.0.0.1:15000/config_dump"], WAIT)
        .unwrap()
        .stdout;
    let dump: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    dump["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["uid"] == uid).cloned())
        .unwrap_or_default()
}

/// `cmd` (`ip netns exec NS PROGRAM ARGS...`) with PROGRAM in new PID and mount namespaces and its
/// own `/proc`: it sees no other process and none of the mounts made after it starts, like ztunnel
/// in a Kubernetes pod without `hostPID`.
fn in_own_pid_namespace(cmd: &Command) -> Command {
    let args: Vec<&OsStr> = cmd.get_args().collect();
    let (netns_exec, program) = args.split_at(3);
    let mut wrapped = Command::new(cmd.get_program());
    wrapped
        .args(netns_exec)
        .args(["unshare", "--pid", "--fork", "--mount-proc"])
        .args(program);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    wrapped
}

/// Starts a ztunnel in `node` with a test CA and the config `workloads`, command wrapped by
/// `wrap`, with this test as its node agent; returns the files' directory (keep it alive), the
/// agent's listener and the ztunnel process.
fn start_ztunnel(
    node: &Netns,
    workloads: &str,
    wrap: impl FnOnce(Command) -> Command,
) -> (tempfile::TempDir, Agent, Process) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let (config, ca_cert, ca_key, socket) = (
        dir.path().join("z.yaml"),
        dir.path().join("ca.pem"),
        dir.path().join("ca-key.pem"),
        dir.path().join("agent.sock"),
    );
    std::fs::write(&config, workloads).unwrap();
    std::fs::write(&ca_cert, ca.cert_pem()).unwrap();
    std::fs::write(&ca_key, ca.key_pem()).unwrap();
    let agent = Agent {
        listener: SeqPacketListener::bind(&socket).unwrap(),
        conn: None,
    };
    let files = ZtunnelFiles {
        config: &config,
        ca_cert: &ca_cert,
        ca_key: &ca_key,
        socket: &socket,
    };
    let cmd = wrap(ztunnel_command(node, "node-1", &files));
    let ztunnel = node.spawn_command("ztunnel", cmd).unwrap();
    (dir, agent, ztunnel)
}

fn pod(uid: &str) -> PodInfo {
    PodInfo {
        uid: uid.into(),
        name: uid.into(),
        namespace: "default".into(),
        service_account: "sa".into(),
    }
}

#[test]
fn handoff_requests_good_and_bad_against_a_real_ztunnel() {
    let topo = Topology::new("handoff", 1).unwrap();
    let node = topo.node(1).unwrap();
    let pod_a = topo.add_pod(1, "pod-a").unwrap();
    let workloads = format!(
        "workloads:\n  - {{name: pod-a, addresses: [\"{}\"]}}\n",
        pod_a.ip
    );
    let (_dir, mut agent, ztunnel) = start_ztunnel(&node.netns, &workloads, |cmd| cmd);
    agent.accept();

    // Malformed requests: error Ack, nothing opened.
    let fd = netns_fd(&pod_a.netns);
    let fd2 = netns_fd(&pod_a.netns);
    let add = AgentRequest::add(&pod("pod-a"));
    assert!(
        agent.request(&add, None).contains("file descriptor"),
        "Add without fd must be refused"
    );
    let two = agent.request_raw(&prost::Message::encode_to_vec(&add), &[&fd, &fd2]);
    assert!(!two.is_empty(), "Add with two fds must be refused");
    assert!(
        !agent.request_raw(b"\xff\xffgarbage", &[]).is_empty(),
        "garbage must be refused"
    );
    assert!(
        !agent
            .request(&AgentRequest::keep("nobody"), None)
            .is_empty(),
        "Keep of an unknown pod"
    );
    let not_ns: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
    assert!(
        !agent.request(&add, Some(&not_ns)).is_empty(),
        "an fd that is not a netns is refused"
    );
    assert!(
        !listening(&pod_a.netns),
        "a refused request opened listeners"
    );

    // Valid Add opens the listeners inside the pod; SnapshotDone makes ztunnel ready.
    assert_eq!(agent.request(&add, Some(&fd)), "");
    assert!(
        listening(&pod_a.netns),
        "listeners after Add\n{}",
        ztunnel.stdout()
    );
    assert_eq!(agent.request(&AgentRequest::snapshot_done(), None), "");
    // The pod's certificate is fetched when the pod is added, before any connection needs it.
    wait_until(
        "the pod's certificate in /config_dump without any connection",
        || {
            node.netns
                .run_timeout("curl", &["-s", "127.0.0.1:15000/config_dump"], WAIT)
                .is_ok_and(|o| {
                    let dump: serde_json::Value =
                        serde_json::from_str(&o.stdout).unwrap_or_default();
                    dump["certificates"].as_array().is_some_and(|certs| {
                        certs
                            .iter()
                            .any(|c| c["identity"] == "spiffe://cluster.local/ns/default/sa/sa")
                    })
                })
        },
        &ztunnel,
    );
    // Del closes them.
    assert_eq!(agent.request(&AgentRequest::del("pod-a"), None), "");
    wait_until(
        "listeners closed after Del",
        || !listening(&pod_a.netns),
        &ztunnel,
    );

    // Reconnect: a snapshot that does not name the pod releases it.
    assert_eq!(agent.request(&add, Some(&fd)), "");
    assert!(listening(&pod_a.netns));
    agent.conn = None; // the agent restarts
    agent.accept();
    assert_eq!(agent.request(&AgentRequest::snapshot_done(), None), "");
    wait_until(
        "pod released by the snapshot",
        || !listening(&pod_a.netns),
        &ztunnel,
    );

    // A netns that vanishes (no process, no mount) releases its listeners without any Del.
    let gone = mesh_cni::netns::NamedNetns::create_unique("mtb-vanish").unwrap();
    let gone_fd: OwnedFd = std::fs::File::open(format!("/var/run/netns/{}", gone.name()))
        .unwrap()
        .into();
    assert_eq!(
        agent.request(&AgentRequest::add(&pod("pod-gone")), Some(&gone_fd)),
        ""
    );
    drop(gone_fd);
    let dump = || {
        let out = node
            .netns
            .run_timeout("curl", &["-s", "127.0.0.1:15000/config_dump"], WAIT)
            .unwrap()
            .stdout;
        out.contains("pod-gone")
    };
    assert!(dump(), "pod-gone is served");
    // Only a namespace the reaper has seen in use can vanish (a ztunnel that cannot see the pods'
    // processes and mounts must not release them: see the next test).
    wait_until(
        "the reaper sees pod-gone's namespace in use",
        || pod_entry(&node.netns, "pod-gone")["netnsTracked"] == true,
        &ztunnel,
    );
    drop(gone); // deletes the namespace's only mount
    wait_until("vanished pod released", || !dump(), &ztunnel);

    // /quitquitquit drains and exits cleanly (after the configured 0.2 s drain period).
    let mut ztunnel = ztunnel;
    let out = node
        .netns
        .run_timeout(
            "curl",
            &["-s", "-X", "POST", "127.0.0.1:15000/quitquitquit"],
            WAIT,
        )
        .unwrap();
    assert!(out.success(), "quitquitquit answered: {out:?}");
    let status = ztunnel
        .wait_timeout(WAIT)
        .expect("ztunnel exits after the drain");
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        ztunnel.stdout()
    );
}

#[test]
fn a_ztunnel_that_cannot_see_the_pods_processes_keeps_serving_them() {
    let topo = Topology::new("handoff-pidns", 1).unwrap();
    let node = topo.node(1).unwrap();
    let (_dir, mut agent, ztunnel) = start_ztunnel(&node.netns, "workloads: []\n", |cmd| {
        in_own_pid_namespace(&cmd)
    });
    agent.accept();

    // The pod and the process that lives in it appear after ztunnel started: ztunnel sees neither
    // the process nor the namespace's mount.
    let pod_a = topo.add_pod(1, "pod-a").unwrap();
    let _app = pod_a.netns.spawn("sleep", "sleep", &["600"]).unwrap();
    assert_eq!(
        agent.request(
            &AgentRequest::add(&pod("pod-a")),
            Some(&netns_fd(&pod_a.netns))
        ),
        ""
    );
    assert!(listening(&pod_a.netns), "listeners after Add");

    // Two and a half reap intervals (2 s each): the pod stays, untracked.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        listening(&pod_a.netns),
        "a pod whose processes ztunnel cannot see was released\n{}",
        ztunnel.stdout()
    );
    let entry = pod_entry(&node.netns, "pod-a");
    assert_eq!(
        entry["netnsTracked"],
        false,
        "ztunnel must not see the pod's namespace in use here: {entry}\n{}",
        ztunnel.stdout()
    );

    // The node agent's Del still releases it.
    assert_eq!(agent.request(&AgentRequest::del("pod-a"), None), "");
    wait_until(
        "listeners closed after Del",
        || !listening(&pod_a.netns),
        &ztunnel,
    );
}
