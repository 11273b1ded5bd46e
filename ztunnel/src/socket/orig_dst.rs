//! The destination a connection had before the nat table redirected it to ztunnel.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use socket2::{SockAddr, SockRef};

use super::SocketError;

/// Reads `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) of an accepted, redirected
/// connection: the address the client actually dialled.
///
/// Works on `std` and tokio streams alike. For an IPv4 client accepted on a dual-stack IPv6 listener
/// (local address `::ffff:a.b.c.d`) the IPv4 lookup is used, since iptables (not ip6tables) did
/// the redirect. The result is returned in canonical form (no IPv4-mapped IPv6 addresses).
pub fn original_dst<S: AsFd>(stream: &S) -> Result<SocketAddr, SocketError> {
    let sock = SockRef::from(stream);
    let local = sock
        .local_addr()
        .map_err(SocketError::LocalAddr)?
        .as_socket()
        .ok_or_else(|| {
            SocketError::LocalAddr(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the socket is not an IPv4/IPv6 socket",
            ))
        })?;
    let redirected_by_v4_rules = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
    };
    let looked_up = if redirected_by_v4_rules {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let addr = looked_up.map_err(|err| SocketError::OriginalDst { local, err })?;
    canonical(&addr).ok_or_else(|| SocketError::OriginalDst {
        local,
        err: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the kernel returned a non-IP address",
        ),
    })
}

fn canonical(addr: &SockAddr) -> Option<SocketAddr> {
    let addr = addr.as_socket()?;
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}
