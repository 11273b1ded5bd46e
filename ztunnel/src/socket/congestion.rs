//! The TCP congestion control of tunnel sockets (`TCP_CONGESTION`).
//!
//! HBONE connections run between the nodes of one cluster: round trips of microseconds to a
//! millisecond, where the node's default algorithm may be a poor fit. BBR in particular, the
//! default of many distributions' tuning guides, paces every socket from a kernel timer when the
//! interface has no `fq` qdisc (veth and most pod interfaces have none): on the two-node benchmark
//! one tunnel moved 5.3 Gbit/s with BBR and 10-12 Gbit/s with CUBIC, with hundreds of spurious
//! retransmissions per second from reordering between the timer's and the sender's CPU under
//! BBR and almost none under CUBIC (benches/README.md). So ztunnel picks the algorithm of the
//! sockets it owns on the tunnel path, CUBIC by default; `kernel` keeps the node's default.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use socket2::Socket;

/// Longest algorithm name the kernel accepts (`TCP_CA_NAME_MAX` is 16 with the NUL).
const MAX_NAME: usize = 15;

/// The value of `--tunnel-congestion` that keeps the kernel's default.
pub const KERNEL_DEFAULT: &str = "kernel";

/// The algorithm ztunnel sets on tunnel sockets unless told otherwise.
pub const DEFAULT_TUNNEL_CONGESTION: &str = "cubic";

/// A congestion control algorithm by its kernel name, e.g. `cubic` or `bbr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Congestion(Arc<str>);

/// A name that cannot be an algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a TCP congestion control name (1-15 characters of a-z, 0-9, `_`, `-`; \
     see /proc/sys/net/ipv4/tcp_available_congestion_control), nor `kernel`"
)]
pub struct BadCongestion(String);

/// The choice of `--tunnel-congestion`: an algorithm, or the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CongestionChoice {
    /// Leave sockets with the node's default.
    Kernel,
    /// Set this algorithm.
    Set(Congestion),
}

impl FromStr for CongestionChoice {
    type Err = BadCongestion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == KERNEL_DEFAULT {
            return Ok(Self::Kernel);
        }
        let valid = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self::Set(Congestion(s.into())))
        } else {
            Err(BadCongestion(s.to_string()))
        }
    }
}

impl CongestionChoice {
    /// The algorithm to set, if any.
    pub fn algorithm(&self) -> Option<&Congestion> {
        match self {
            Self::Kernel => None,
            Self::Set(c) => Some(c),
        }
    }

    /// The algorithm to use if the kernel lets this process set it ([`Congestion::probe`]);
    /// otherwise a warning and `None`, the kernel's default: a tuning choice never stops a proxy.
    /// Called once at start by ztunnel and the waypoint.
    pub fn checked(&self) -> Option<Congestion> {
        let cc = self.algorithm()?;
        match cc.probe() {
            Ok(()) => {
                tracing::info!(algorithm = %cc, "tunnel sockets use this TCP congestion control");
                Some(cc.clone())
            }
            Err(error) => {
                tracing::warn!(
                    algorithm = %cc,
                    %error,
                    "cannot use this TCP congestion control (not in \
                     tcp_available_congestion_control, or not allowed without CAP_NET_ADMIN); \
                     tunnel sockets keep the kernel default"
                );
                None
            }
        }
    }
}

impl Congestion {
    /// The kernel name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Sets the algorithm on `socket` (a listener passes it on to the sockets it accepts).
    pub fn apply(&self, socket: &Socket) -> std::io::Result<()> {
        socket.set_tcp_congestion(self.0.as_bytes())
    }

    /// Sets the algorithm on `socket` (to or from `addr`), logging instead of failing: the
    /// algorithm was checked at start ([`CongestionChoice::checked`]), and a socket is never
    /// refused over a tuning choice.
    pub fn apply_best_effort(&self, socket: &Socket, addr: SocketAddr) {
        if let Err(error) = self.apply(socket) {
            tracing::debug!(%addr, algorithm = %self, %error, "cannot set TCP_CONGESTION; the kernel default stays");
        }
    }

    /// The algorithm `socket` has now (the kernel pads the name with NULs; they are cut).
    pub fn of(socket: &Socket) -> std::io::Result<String> {
        let raw = socket.tcp_congestion()?;
        let name = raw.split(|b| *b == 0).next().unwrap_or_default();
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    /// Checks once that this kernel has the algorithm and lets ztunnel set it: a throw-away socket
    /// gets it, and the kernel's answer is returned (ENOENT: not built or not loaded; EPERM: not
    /// in `tcp_allowed_congestion_control` and no CAP_NET_ADMIN).
    pub fn probe(&self) -> std::io::Result<()> {
        let socket = Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        self.apply(&socket)
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CongestionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel => f.write_str(KERNEL_DEFAULT),
            Self::Set(c) => c.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::capture::Capture;
    use crate::telemetry::{LogFormat, build_subscriber};

    #[test]
    fn names_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "kernel".parse::<CongestionChoice>().expect("kernel"),
            CongestionChoice::Kernel
        );
        let cubic: CongestionChoice = "cubic".parse().expect("cubic");
        assert_eq!(cubic.algorithm().map(Congestion::name), Some("cubic"));
        assert_eq!(cubic.to_string(), "cubic");
        for bad in ["", "CUBIC", "cu bic", "a_name_that_is_too_long", "bbr\0"] {
            let e = bad.parse::<CongestionChoice>().unwrap_err();
            assert!(e.to_string().contains("tcp_available_congestion_control"));
        }
    }

    #[test]
    fn the_algorithm_is_set_on_the_socket_and_unknown_ones_fail() {
        let reno = "reno"
            .parse::<CongestionChoice>()
            .expect("reno")
            .algorithm()
            .cloned()
            .expect("an algorithm");
        // Reno is built into every kernel and always allowed.
        reno.probe().expect("probe reno");
        let s = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        reno.apply(&s).expect("set reno");
        assert_eq!(Congestion::of(&s).expect("read back"), "reno");
        let none = Congestion("no_such_algo".into());
        assert!(none.probe().is_err());
    }

    /// Runs [`CongestionChoice::checked`] for `choice` with a capturing logger; returns its result and
    /// the log lines.
    fn probe_logged(choice: &str) -> (Option<Congestion>, Vec<String>) {
        let choice: CongestionChoice = choice.parse().expect("valid choice");
        let capture = Capture::default();
        let writer = capture.clone();
        let (subscriber, _handle) =
            build_subscriber(LogFormat::Text, "info", move || writer.clone(), false)
                .expect("subscriber");
        let result = tracing::subscriber::with_default(subscriber, || choice.checked());
        (result, capture.lines())
    }

    #[test]
    fn an_algorithm_the_kernel_lacks_is_a_warning_and_the_kernel_default() {
        let (result, lines) = probe_logged("nosuchcc");
        assert_eq!(result, None);
        assert!(
            lines.iter().any(|l| l.contains("WARN")
                && l.contains("nosuchcc")
                && l.contains("kernel default")),
            "no warning naming the algorithm: {lines:?}"
        );
    }

    #[test]
    fn an_available_algorithm_is_used_and_logged() {
        // reno is built into every kernel and always allowed.
        let (result, lines) = probe_logged("reno");
        assert_eq!(result.as_ref().map(Congestion::name), Some("reno"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("INFO") && l.contains("reno")),
            "no log line naming the algorithm: {lines:?}"
        );
    }

    #[test]
    fn kernel_means_no_probe_and_no_algorithm() {
        let (result, lines) = probe_logged("kernel");
        assert_eq!(result, None);
        assert!(lines.is_empty(), "unexpected log: {lines:?}");
    }
}
