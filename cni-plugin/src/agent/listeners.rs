//! Whether ztunnel's listeners are open inside a pod's network namespace: the TCP sockets in
//! LISTEN state on 15001/15006/15008, read from `/proc/thread-self/net/tcp{,6}` by a thread
//! that entered the namespace (so it sees that namespace's sockets, no tool needed).

use std::collections::BTreeSet;

use crate::netns::{Netns, NetnsError};
use crate::rules::{HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};

/// The ports ztunnel opens in every enrolled pod (DESIGN.md 3).
pub const ZTUNNEL_PORTS: [u16; 3] = [OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, HBONE_PORT];

/// TCP state code of LISTEN in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Errors of looking at a namespace's sockets.
#[derive(Debug, thiserror::Error)]
pub enum ListenersError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The socket tables could not be read.
    #[error("cannot read the TCP socket table in netns {netns}: {source}")]
    Read {
        /// The namespace.
        netns: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The TCP ports in LISTEN state inside `netns`.
pub fn listening_ports(netns: &Netns) -> Result<BTreeSet<u16>, ListenersError> {
    netns.run(|| {
        let mut ports = BTreeSet::new();
        for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
            match std::fs::read_to_string(table) {
                Ok(text) => ports.extend(parse_listening(&text)),
                // No IPv6 in this kernel: only the IPv4 table exists.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && table.ends_with('6') => {}
                Err(source) => {
                    return Err(ListenersError::Read {
                        netns: netns.label().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(ports)
    })?
}

/// Whether every ztunnel port listens in `netns`.
pub fn ztunnel_listening(netns: &Netns) -> Result<bool, ListenersError> {
    let ports = listening_ports(netns)?;
    Ok(ZTUNNEL_PORTS.iter().all(|p| ports.contains(p)))
}

/// Local ports of LISTEN rows of a `/proc/net/tcp` table.
pub fn parse_listening(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != TCP_LISTEN {
            return None;
        }
        let port = local.rsplit(':').next()?;
        u16::from_str_radix(port, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_rows_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:3A99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening(table).collect::<Vec<_>>(), vec![15001]);
    }

    #[test]
    fn sees_a_listener_of_our_own_namespace() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = Netns::current().expect("current netns");
        assert!(listening_ports(&me).expect("ports").contains(&port));
    }
}
