//! Socket addresses for log records, formatted without `core::fmt`'s per-octet machinery.
//!
//! Every access-log record names two or three addresses. The standard `Display` of an IPv4
//! socket address pads each octet and the port through `Formatter::pad_integral`, ~1,300
//! instructions per address; a third of the waypoint's log-record cost. [`LogAddr`] writes the
//! same text from a stack buffer in one `write_str`. IPv6 addresses, rare here, keep the standard
//! formatting.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

/// A socket address as a log field value: the same text as its `Display`, written faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogAddr(pub SocketAddr);

/// Longest IPv4 socket address text: `255.255.255.255:65535`.
const V4_MAX: usize = 21;

impl fmt::Display for LogAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => {
                let mut buf = [0u8; V4_MAX];
                let len = write_v4(&a, &mut buf);
                // Only ASCII digits, dots and a colon were written.
                let text = std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?;
                f.write_str(text)
            }
            SocketAddr::V6(a) => fmt::Display::fmt(&a, f),
        }
    }
}

/// Writes `a.b.c.d:port` into `buf`, returning the length.
fn write_v4(a: &SocketAddrV4, buf: &mut [u8; V4_MAX]) -> usize {
    let mut at = 0;
    for (i, octet) in a.ip().octets().into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        at = write_decimal(u32::from(octet), buf, at);
    }
    buf[at] = b':';
    write_decimal(u32::from(a.port()), buf, at + 1)
}

/// Writes `n` (at most 65535) in decimal at `buf[at..]`, returning the index after it.
fn write_decimal(n: u32, buf: &mut [u8; V4_MAX], at: usize) -> usize {
    let mut digits = [0u8; 5];
    let mut len = 0;
    let mut rest = n;
    loop {
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 || len == digits.len() {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[at + i] = *d;
    }
    at + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exactly_what_display_writes() {
        let cases = [
            "0.0.0.0:0",
            "10.96.0.20:8080",
            "255.255.255.255:65535",
            "1.2.3.4:5",
            "100.10.1.199:15008",
            "[::1]:80",
            "[fd00::20]:15008",
            "[fe80::1%3]:443",
        ];
        for case in cases {
            let addr: SocketAddr = case.parse().unwrap();
            assert_eq!(LogAddr(addr).to_string(), addr.to_string(), "{case}");
        }
    }

    #[test]
    fn every_octet_and_port_digit_count_matches_display() {
        for n in [0u16, 9, 10, 99, 100, 255, 999, 1000, 9999, 10000, 65535] {
            let octet = u8::try_from(n.min(255)).unwrap();
            let addr = SocketAddr::from(([octet, 7, octet, 70], n));
            assert_eq!(LogAddr(addr).to_string(), addr.to_string());
        }
    }
}
