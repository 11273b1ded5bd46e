//! Handoff transport and validation over real SOCK_SEQPACKET sockets.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::stat::fstat;

use super::*;
use crate::handoff::{AgentRequest, Command, PodInfo, Reply, ZtunnelMessage};

fn pod(uid: &str) -> PodInfo {
    PodInfo {
        uid: uid.into(),
        name: "echo-1".into(),
        namespace: "default".into(),
        service_account: "echo".into(),
    }
}

fn netns() -> File {
    File::open("/proc/self/ns/net").expect("open own netns")
}

fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    let (sa, sb) = (fstat(a).expect("fstat"), fstat(b).expect("fstat"));
    (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
}

#[test]
fn add_round_trip_passes_the_netns_fd() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    let ns = netns();
    agent
        .send(&AgentRequest::add(&pod("uid-1")), Some(ns.as_fd()))
        .expect("send add");
    match ztunnel.recv_command().expect("recv add") {
        Command::Add { pod: got, netns } => {
            assert_eq!(got, pod("uid-1"));
            assert!(
                same_file(netns.as_fd(), ns.as_fd()),
                "received fd is not the netns sent"
            );
            assert_ne!(netns.as_raw_fd(), ns.as_raw_fd());
            let flags = nix::fcntl::fcntl(&netns, nix::fcntl::FcntlArg::F_GETFD).expect("fcntl");
            assert_ne!(
                flags & libc::FD_CLOEXEC,
                0,
                "received fd must be close-on-exec"
            );
        }
        other => panic!("expected Add, got {other:?}"),
    }
    ztunnel
        .send(&ZtunnelMessage::ack(Err("netns busy".into())), None)
        .expect("ack");
    let (msg, fds) = agent.recv::<ZtunnelMessage>().expect("recv ack");
    assert_eq!(
        Reply::from_message(msg, fds),
        Ok(Reply::Ack(Err("netns busy".into())))
    );
}

#[test]
fn every_request_kind_round_trips() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    agent.send(&AgentRequest::keep("a"), None).expect("keep");
    agent.send(&AgentRequest::del("b"), None).expect("del");
    agent
        .send(&AgentRequest::snapshot_done(), None)
        .expect("done");
    assert!(matches!(ztunnel.recv_command(), Ok(Command::Keep { uid }) if uid == "a"));
    assert!(matches!(ztunnel.recv_command(), Ok(Command::Del { uid }) if uid == "b"));
    assert!(matches!(ztunnel.recv_command(), Ok(Command::SnapshotDone)));
}

#[test]
fn listener_accepts_connections_on_a_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handoff.sock");
    let listener = SeqPacketListener::bind(&path).expect("bind");
    assert_eq!(listener.path(), path);
    let client = std::thread::spawn({
        let path = path.clone();
        move || {
            let conn = SeqPacketConn::connect(&path).expect("connect");
            conn.send(&ZtunnelMessage::hello(), None).expect("hello");
            conn.recv_command().expect("snapshot done")
        }
    });
    let server = listener.accept().expect("accept");
    let (msg, fds) = server.recv::<ZtunnelMessage>().expect("recv hello");
    assert_eq!(
        Reply::from_message(msg, fds),
        Ok(Reply::Hello { version: 1 })
    );
    server
        .send(&AgentRequest::snapshot_done(), None)
        .expect("send");
    assert!(matches!(
        client.join().expect("client thread"),
        Command::SnapshotDone
    ));
    // A new agent replaces the stale socket file left behind.
    drop(server);
    drop(listener);
    let again = SeqPacketListener::bind(&path).expect("rebind over stale socket");
    drop(again);
}

#[test]
fn bind_never_removes_other_files_and_connect_reports_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").expect("write");
    let err = SeqPacketListener::bind(&file).expect_err("regular file");
    assert!(matches!(err, HandoffError::Bind { .. }), "{err}");
    assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
    let missing = dir.path().join("nobody.sock");
    let err = SeqPacketConn::connect(&missing).expect_err("nobody listens");
    assert!(err.to_string().contains("nobody.sock"), "{err}");
}

#[test]
fn protocol_violations_are_rejected() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    let ns = netns();
    let ns2 = netns();
    let raw = [ns.as_raw_fd(), ns2.as_raw_fd()];

    agent
        .send(&AgentRequest::add(&pod("u")), None)
        .expect("send");
    let err = ztunnel.recv_command().expect_err("add without fd");
    assert!(
        matches!(err, HandoffError::Command(CommandError::AddWithoutFd { ref uid }) if uid == "u"),
        "{err}"
    );

    agent
        .send_raw(
            &prost::Message::encode_to_vec(&AgentRequest::add(&pod("u"))),
            &raw,
        )
        .expect("send");
    let err = ztunnel.recv_command().expect_err("add with two fds");
    assert!(
        matches!(
            err,
            HandoffError::Command(CommandError::AddWithExtraFds { count: 2, .. })
        ),
        "{err}"
    );

    agent
        .send(&AgentRequest::keep("u"), Some(ns.as_fd()))
        .expect("send");
    let err = ztunnel.recv_command().expect_err("fd on keep");
    assert!(
        matches!(
            err,
            HandoffError::Command(CommandError::UnexpectedFds {
                kind: "Keep",
                count: 1
            })
        ),
        "{err}"
    );

    agent
        .send(&AgentRequest::snapshot_done(), Some(ns.as_fd()))
        .expect("send");
    assert!(matches!(
        ztunnel.recv_command(),
        Err(HandoffError::Command(CommandError::UnexpectedFds { .. }))
    ));

    agent.send(&AgentRequest::del(""), None).expect("send");
    let err = ztunnel.recv_command().expect_err("empty uid");
    assert!(
        matches!(
            err,
            HandoffError::Command(CommandError::EmptyField {
                kind: "Del",
                field: "uid"
            })
        ),
        "{err}"
    );

    let mut no_name = pod("u");
    no_name.namespace.clear();
    agent
        .send(&AgentRequest::add(&no_name), Some(ns.as_fd()))
        .expect("send");
    assert!(matches!(
        ztunnel.recv_command(),
        Err(HandoffError::Command(CommandError::EmptyField {
            kind: "Add",
            field: "namespace"
        }))
    ));

    agent
        .send_raw(&[0xff, 0xff, 0xff, 0xff, 0x0f], &[])
        .expect("send garbage");
    let err = ztunnel.recv_command().expect_err("garbage");
    assert!(matches!(err, HandoffError::Decode(_)), "{err}");

    let none = AgentRequest { payload: None };
    assert!(matches!(
        agent.send(&none, None),
        Err(HandoffError::EmptyMessage)
    ));
    assert!(matches!(
        Command::from_request(none, vec![]),
        Err(CommandError::NoPayload(_))
    ));

    ztunnel
        .send(&ZtunnelMessage::hello(), Some(ns.as_fd()))
        .expect("send");
    let (msg, fds) = agent.recv::<ZtunnelMessage>().expect("recv");
    assert!(matches!(
        Reply::from_message(msg, fds),
        Err(CommandError::UnexpectedFds { kind: "Hello", .. })
    ));

    // After all that, the connection still works.
    agent.send(&AgentRequest::keep("ok"), None).expect("send");
    assert!(matches!(ztunnel.recv_command(), Ok(Command::Keep { uid }) if uid == "ok"));
}

#[test]
fn oversized_datagrams_are_refused_on_both_sides() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    let big = AgentRequest::keep("x".repeat(MAX_DATAGRAM));
    assert!(matches!(
        agent.send(&big, None),
        Err(HandoffError::TooLarge(_))
    ));
    agent
        .send_raw(&vec![0u8; MAX_DATAGRAM + 1], &[])
        .expect("raw send");
    let err = ztunnel.recv_command().expect_err("truncated");
    assert!(
        matches!(err, HandoffError::Truncated { what: "data" }),
        "{err}"
    );
    // Exactly the limit is fine at the transport level.
    agent
        .send_raw(&vec![0u8; MAX_DATAGRAM], &[])
        .expect("raw send");
    assert_eq!(ztunnel.recv_raw().expect("recv").0.len(), MAX_DATAGRAM);
}

#[test]
fn too_many_fds_are_refused_and_closed() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let raw = [write_end.as_raw_fd(); 3];
    agent.send_raw(b"\x12\x00", &raw).expect("send 3 fds");
    drop(write_end);
    let err = ztunnel.recv_raw().expect_err("truncated control data");
    assert!(
        matches!(
            err,
            HandoffError::Truncated {
                what: "file descriptors"
            }
        ),
        "{err}"
    );
    // Every received copy of the write end was closed: a non-blocking read of the read end
    // sees EOF (0 bytes) instead of EAGAIN (which a leaked write end would cause).
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(&read_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("nonblocking");
    let mut buf = [0u8; 1];
    let got = nix::unistd::read(&read_end, &mut buf);
    assert_eq!(got, Ok(0), "a received fd leaked: the pipe did not see EOF");
}

#[test]
fn read_timeout_and_peer_close() {
    let (agent, ztunnel) = SeqPacketConn::pair().expect("pair");
    ztunnel
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let start = Instant::now();
    assert!(matches!(ztunnel.recv_command(), Err(HandoffError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(40));
    ztunnel.set_read_timeout(None).expect("no timeout");
    drop(agent);
    assert!(matches!(ztunnel.recv_command(), Err(HandoffError::Closed)));
    let err = ztunnel
        .send(&ZtunnelMessage::hello(), None)
        .expect_err("peer gone");
    assert!(
        matches!(err, HandoffError::Send(nix::errno::Errno::EPIPE)),
        "{err}"
    );
}
