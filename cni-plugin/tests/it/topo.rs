//! Test topologies built only inside network namespaces the test creates (never the root one).

#![allow(dead_code, clippy::unwrap_used)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mesh_cni::exec::run_in;
use mesh_cni::netns::{NamedNetns, Netns};

/// Runs a command in `ns`, panicking with its stderr on failure.
pub fn sh(ns: &Netns, program: &str, args: &[&str]) -> String {
    run_in(ns, program, args, None).unwrap_or_else(|e| panic!("{e}"))
}

pub fn up_lo(ns: &Netns) {
    sh(ns, "ip", &["link", "set", "lo", "up"]);
}

/// Creates a veth pair `a_if` in `a` and `b_if` in `b` (made inside `a`, moved straight into `b`),
/// assigns the /24 addresses and brings both ends up.
pub fn veth(a: &NamedNetns, a_if: &str, a_cidr: &str, b: &NamedNetns, b_if: &str, b_cidr: &str) {
    let (na, nb) = (a.netns(), b.netns());
    sh(
        na,
        "ip",
        &[
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    );
    sh(na, "ip", &["addr", "add", a_cidr, "dev", a_if]);
    sh(nb, "ip", &["addr", "add", b_cidr, "dev", b_if]);
    sh(na, "ip", &["link", "set", a_if, "up"]);
    sh(nb, "ip", &["link", "set", b_if, "up"]);
}

/// A pod netns `10.77.0.1/24` wired to a peer netns `10.77.0.2/24` that is its default gateway.
/// The peer also owns `10.9.9.9` and `169.254.7.127` (on its lo) to play remote servers/kubelet.
pub struct PodAndPeer {
    pub pod: NamedNetns,
    pub peer: NamedNetns,
}

pub const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);

impl PodAndPeer {
    pub fn new() -> Self {
        let pod = NamedNetns::create_unique("mcni-pod").unwrap();
        let peer = NamedNetns::create_unique("mcni-peer").unwrap();
        up_lo(pod.netns());
        up_lo(peer.netns());
        veth(&pod, "eth0", "10.77.0.1/24", &peer, "veth0", "10.77.0.2/24");
        sh(
            pod.netns(),
            "ip",
            &["route", "add", "default", "via", "10.77.0.2"],
        );
        sh(
            peer.netns(),
            "ip",
            &["addr", "add", "10.9.9.9/32", "dev", "lo"],
        );
        sh(
            peer.netns(),
            "ip",
            &["addr", "add", "169.254.7.127/32", "dev", "lo"],
        );
        Self { pod, peer }
    }
}

/// Binds a listener inside `ns`.
pub fn listen(ns: &Netns, addr: SocketAddrV4) -> TcpListener {
    let l = ns.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Connects from inside `ns`, optionally from `bind` and with SO_MARK `mark`.
pub fn connect(
    ns: &Netns,
    to: SocketAddrV4,
    bind: Option<SocketAddrV4>,
    mark: Option<u32>,
) -> io::Result<TcpStream> {
    ns.run(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        if let Some(m) = mark {
            s.set_mark(m)?;
        }
        if let Some(b) = bind {
            s.bind(&SocketAddr::V4(b).into())?;
        }
        s.connect_timeout(&SocketAddr::V4(to).into(), Duration::from_secs(3))?;
        Ok(s.into())
    })
    .unwrap()
}

/// Accepts one connection within `wait`, or `None`.
pub fn accept_within(l: &TcpListener, wait: Duration) -> Option<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + wait;
    loop {
        match l.accept() {
            Ok(c) => return Some(c),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// SO_ORIGINAL_DST of an accepted (redirected) socket.
pub fn original_dst(s: &TcpStream) -> SocketAddrV4 {
    let sa = nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::OriginalDst)
        .expect("SO_ORIGINAL_DST");
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}
