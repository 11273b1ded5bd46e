//! The handoff server against a peer that plays ztunnel with the real codec, passing real
//! network namespace descriptors. Needs root (to create namespaces).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesh_api::handoff::{Command, HandoffError, PodInfo, SeqPacketConn, ZtunnelMessage};
use mesh_cni::handoff_server::{Delivery, HandoffServer, HandoffServerError, ServerConfig};
use mesh_cni::netns::{NamedNetns, Netns};
use nix::sys::stat::fstat;

const WAIT: Duration = Duration::from_secs(5);

fn pod(uid: &str) -> PodInfo {
    PodInfo {
        uid: uid.into(),
        name: format!("pod-{uid}"),
        namespace: "default".into(),
        service_account: "sa".into(),
    }
}

fn inode(fd: BorrowedFd<'_>) -> (u64, u64) {
    let st = fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// A server in a fresh temp dir, and pods each with its own real network namespace.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    server: HandoffServer,
    netns: Vec<(String, NamedNetns)>,
}

impl Fixture {
    fn new(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztunnel.sock");
        let server = HandoffServer::bind(&path, config).unwrap();
        Self {
            _dir: dir,
            path,
            server,
            netns: Vec::new(),
        }
    }

    /// A new pod `uid` with a fresh netns: (info, a descriptor of it for add_pod).
    fn new_pod(&mut self, uid: &str) -> (PodInfo, OwnedFd) {
        let ns = NamedNetns::create_unique("mcni-ho").unwrap();
        let fd = ns.netns().try_clone().unwrap().into_fd();
        self.netns.push((uid.to_string(), ns));
        (pod(uid), fd)
    }

    fn netns_of(&self, uid: &str) -> &Netns {
        self.netns.iter().find(|(u, _)| u == uid).unwrap().1.netns()
    }

    /// Waits until the server noticed that ztunnel hung up.
    fn wait_disconnected(&self) {
        let deadline = Instant::now() + WAIT;
        while self.server.is_connected() {
            assert!(Instant::now() < deadline, "hang-up not noticed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Enrols a pod while no ztunnel is connected.
    fn enrol_offline(&mut self, uid: &str) {
        let (info, fd) = self.new_pod(uid);
        assert_eq!(
            self.server.add_pod(info, fd).unwrap(),
            Delivery::NotConnected
        );
    }
}

/// The test's ztunnel: real codec, real socket.
struct Peer(SeqPacketConn);

impl Peer {
    fn connect(path: &Path) -> Self {
        let p = Self::connect_silent(path);
        p.0.send(&ZtunnelMessage::hello(), None).unwrap();
        p
    }

    fn connect_silent(path: &Path) -> Self {
        let conn = SeqPacketConn::connect(path).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        Self(conn)
    }

    fn next(&self) -> Command {
        self.0.recv_command().unwrap()
    }

    fn ack(&self, result: Result<(), String>) {
        self.0.send(&ZtunnelMessage::ack(result), None).unwrap();
    }

    /// Receives the replay, acking every Add with `answer(uid)`; returns the Adds in order.
    fn snapshot_with(
        &self,
        answer: impl Fn(&str) -> Result<(), String>,
    ) -> Vec<(PodInfo, OwnedFd)> {
        let mut adds = Vec::new();
        loop {
            match self.next() {
                Command::Add { pod, netns } => {
                    self.ack(answer(&pod.uid));
                    adds.push((pod, netns));
                }
                Command::SnapshotDone => {
                    self.ack(Ok(()));
                    return adds;
                }
                other => panic!("unexpected during replay: {other:?}"),
            }
        }
    }

    fn snapshot(&self) -> Vec<(PodInfo, OwnedFd)> {
        self.snapshot_with(|_| Ok(()))
    }

    fn uids(adds: &[(PodInfo, OwnedFd)]) -> Vec<&str> {
        adds.iter().map(|(p, _)| p.uid.as_str()).collect()
    }

    /// The server closed this connection (EOF), possibly after pending requests.
    fn assert_closed(&self) {
        loop {
            match self.0.recv_command() {
                Err(HandoffError::Closed) => return,
                Ok(_) => continue,
                Err(e) => panic!("expected the server to close, got {e}"),
            }
        }
    }

    fn assert_quiet(&self, for_: Duration) {
        self.0.set_read_timeout(Some(for_)).unwrap();
        match self.0.recv_command() {
            Err(HandoffError::Timeout) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
        self.0.set_read_timeout(Some(WAIT)).unwrap();
    }
}

/// Calls `f` on another thread while this one plays ztunnel with `peer_side`.
fn with_peer<T: Send>(f: impl FnOnce() -> T + Send, peer_side: impl FnOnce()) -> T {
    std::thread::scope(|s| {
        let call = s.spawn(f);
        peer_side();
        call.join().unwrap()
    })
}

#[test]
fn replays_enrolled_pods_then_delivers_changes_in_lock_step() {
    let mut fx = Fixture::new(ServerConfig::default());
    fx.enrol_offline("b");
    fx.enrol_offline("a");
    assert!(!fx.server.is_connected());

    let peer = Peer::connect(&fx.path);
    let adds = peer.snapshot();
    assert_eq!(Peer::uids(&adds), ["a", "b"]);
    for (info, fd) in &adds {
        assert_eq!(info, &pod(&info.uid));
        assert_eq!(inode(fd.as_fd()), inode(fx.netns_of(&info.uid).as_fd()));
        // The received descriptor is a usable netns: entering it shows the fresh netns' `lo`.
        let ns = Netns::from_fd(fd.try_clone().unwrap(), info.uid.clone());
        let ifaces = ns.run(|| nix::net::if_::if_nameindex().unwrap().iter().count());
        assert_eq!(ifaces.unwrap(), 1);
    }
    assert!(fx.server.wait_for_snapshots(1, WAIT));
    assert!(fx.server.is_connected());

    let (info, fd) = fx.new_pod("c");
    let c_inode = inode(fd.as_fd());
    let server = &fx.server;
    let delivered = with_peer(
        || server.add_pod(info, fd),
        || match peer.next() {
            Command::Add { pod: got, netns } => {
                assert_eq!(got.uid, "c");
                assert_eq!(inode(netns.as_fd()), c_inode);
                peer.ack(Ok(()));
            }
            other => panic!("expected Add, got {other:?}"),
        },
    );
    assert_eq!(delivered.unwrap(), Delivery::Acked);

    let removed = with_peer(
        || server.remove_pod("a"),
        || match peer.next() {
            Command::Del { uid } => {
                assert_eq!(uid, "a");
                peer.ack(Ok(()));
            }
            other => panic!("expected Del, got {other:?}"),
        },
    );
    assert_eq!(removed.unwrap(), Delivery::Acked);
    assert_eq!(server.remove_pod("nope").unwrap(), Delivery::NotEnrolled);
    peer.assert_quiet(Duration::from_millis(200));
    let uids: Vec<String> = server.pods().into_iter().map(|p| p.uid).collect();
    assert_eq!(uids, ["b", "c"]);
}

#[test]
fn reconnect_replaces_the_old_connection_and_gets_a_full_replay() {
    let mut fx = Fixture::new(ServerConfig::default());
    fx.enrol_offline("a");
    fx.enrol_offline("b");
    let first = Peer::connect(&fx.path);
    assert_eq!(Peer::uids(&first.snapshot()), ["a", "b"]);

    // A second ztunnel (an upgrade) gets the full replay and takes over.
    let second = Peer::connect(&fx.path);
    assert_eq!(Peer::uids(&second.snapshot()), ["a", "b"]);
    assert!(fx.server.wait_for_snapshots(2, WAIT));
    first.assert_closed();

    let (info, fd) = fx.new_pod("c");
    let server = &fx.server;
    let delivered = with_peer(
        || server.add_pod(info, fd),
        || {
            assert!(matches!(second.next(), Command::Add { pod, .. } if pod.uid == "c"));
            second.ack(Ok(()));
        },
    );
    assert_eq!(delivered.unwrap(), Delivery::Acked);

    // ztunnel goes away: changes are only recorded, then replayed to the next one.
    drop(second);
    fx.wait_disconnected();
    fx.enrol_offline("d");
    assert_eq!(fx.server.remove_pod("a").unwrap(), Delivery::NotConnected);
    let third = Peer::connect(&fx.path);
    let adds = third.snapshot();
    assert_eq!(Peer::uids(&adds), ["b", "c", "d"]);
    assert_eq!(inode(adds[2].1.as_fd()), inode(fx.netns_of("d").as_fd()));
    assert!(fx.server.wait_for_snapshots(3, WAIT));
}

#[test]
fn error_ack_propagates_and_the_pod_stays_enrolled() {
    let mut fx = Fixture::new(ServerConfig::default());
    let peer = Peer::connect(&fx.path);
    assert!(peer.snapshot().is_empty());
    assert!(fx.server.wait_for_snapshots(1, WAIT));

    let (info, fd) = fx.new_pod("x");
    let server = &fx.server;
    let result = with_peer(
        || server.add_pod(info, fd),
        || {
            assert!(matches!(peer.next(), Command::Add { .. }));
            peer.ack(Err("cannot open listeners in netns".into()));
        },
    );
    match result {
        Err(HandoffServerError::Refused { request, reason }) => {
            assert_eq!(request, "Add pod x");
            assert_eq!(reason, "cannot open listeners in netns");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(
        fx.server.is_connected(),
        "a refusal must not close the connection"
    );
    assert_eq!(fx.server.pods(), [pod("x")]);

    // A refusal during a replay does not stop it: the rest and SnapshotDone still come.
    drop(peer);
    fx.wait_disconnected();
    fx.enrol_offline("y");
    let again = Peer::connect(&fx.path);
    let adds = again.snapshot_with(|uid| {
        if uid == "x" {
            Err("still broken".into())
        } else {
            Ok(())
        }
    });
    assert_eq!(Peer::uids(&adds), ["x", "y"]);
    assert!(fx.server.wait_for_snapshots(2, WAIT));
}

#[test]
fn unanswered_request_times_out_and_closes_the_connection() {
    let config = ServerConfig {
        ack_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let mut fx = Fixture::new(config);
    let peer = Peer::connect(&fx.path);
    peer.snapshot();
    assert!(fx.server.wait_for_snapshots(1, WAIT));

    let (info, fd) = fx.new_pod("slow");
    let started = Instant::now();
    match fx.server.add_pod(info, fd) {
        Err(HandoffServerError::Timeout { request, after }) => {
            assert_eq!(request, "Add pod slow");
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!fx.server.is_connected());
    assert_eq!(fx.server.pods(), [pod("slow")]);
    // The peer got the Add, then the server hung up.
    assert!(matches!(peer.next(), Command::Add { .. }));
    peer.assert_closed();
}

#[test]
fn bad_greetings_are_refused_without_blocking_good_ones() {
    let config = ServerConfig {
        hello_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let mut fx = Fixture::new(config);
    fx.enrol_offline("a");

    let ack_first = Peer::connect_silent(&fx.path);
    ack_first.ack(Ok(()));
    ack_first.assert_closed();

    let mut hello = ZtunnelMessage::hello();
    if let Some(mesh_api::handoff::ztunnel_message::Payload::Hello(h)) = hello.payload.as_mut() {
        h.version = 99;
    }
    let wrong_version = Peer::connect_silent(&fx.path);
    wrong_version.0.send(&hello, None).unwrap();
    wrong_version.assert_closed();

    let mute = Peer::connect_silent(&fx.path);
    mute.assert_closed();
    assert_eq!(fx.server.snapshots(), 0);

    let good = Peer::connect(&fx.path);
    assert_eq!(Peer::uids(&good.snapshot()), ["a"]);
    assert!(fx.server.wait_for_snapshots(1, WAIT));
}

#[test]
fn dropping_the_server_closes_the_connection_and_removes_the_socket() {
    let fx = Fixture::new(ServerConfig::default());
    let peer = Peer::connect(&fx.path);
    peer.snapshot();
    assert!(fx.server.wait_for_snapshots(1, WAIT));
    let started = Instant::now();
    let Fixture { server, path, .. } = fx;
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2), "drop blocked");
    peer.assert_closed();
    assert!(!path.exists(), "socket file left behind");
    assert!(SeqPacketConn::connect(&path).is_err());
}
