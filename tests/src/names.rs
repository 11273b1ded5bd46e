//! Unique names for network namespaces and interfaces.
//!
//! Tests run in parallel (nextest runs each test in its own process), so every name carries the pid
//! of the test process and a per-process counter. Netns names also start with [`NETNS_PREFIX`] so
//! that [`crate::netns::sweep_stale`] can find namespaces left behind by a killed test process.

use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every network namespace created by the testbed.
pub const NETNS_PREFIX: &str = "mtb";

/// Linux limit on interface names, without the trailing NUL (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Keeps only characters that are safe in file names, interface names and shell-free argv.
fn sanitize(tag: &str) -> String {
    tag.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

/// A unique network namespace name: `mtb-<pid>-<counter>-<tag>` (tag sanitized, at most 24 chars).
pub fn netns_name(tag: &str) -> String {
    let mut tag = sanitize(tag);
    tag.truncate(24);
    format!("{NETNS_PREFIX}-{}-{}-{tag}", std::process::id(), next())
}

/// Extracts the pid of the test process that created a netns named by [`netns_name`].
pub fn netns_owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NETNS_PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

/// A unique interface name that fits IFNAMSIZ: `<tag><pid base36>-<counter base36>`, the tag
/// shortened so that the whole name is at most [`IFNAME_MAX`] characters.
pub fn iface_name(tag: &str) -> String {
    let suffix = format!(
        "{}-{}",
        base36(u64::from(std::process::id())),
        base36(next())
    );
    let mut tag = sanitize(tag);
    tag.truncate(IFNAME_MAX.saturating_sub(suffix.len()));
    format!("{tag}{suffix}")
}

/// A unique short name for files and labels: `<tag>-<pid>-<counter>`.
pub fn unique(tag: &str) -> String {
    format!("{}-{}-{}", sanitize(tag), std::process::id(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_names_fit_ifnamsiz_and_differ() {
        let a = iface_name("a-very-long-tag-name");
        let b = iface_name("a-very-long-tag-name");
        assert!(a.len() <= IFNAME_MAX, "{a} too long");
        assert_ne!(a, b);
        assert!(iface_name("").len() <= IFNAME_MAX);
    }

    #[test]
    fn netns_names_carry_the_owner_pid() {
        let n = netns_name("node 1/x");
        assert!(n.starts_with("mtb-"));
        assert!(!n.contains(' ') && !n.contains('/'));
        assert_eq!(netns_owner_pid(&n), Some(std::process::id()));
        assert_eq!(netns_owner_pid("other-12-3"), None);
    }

    #[test]
    fn base36_encodes() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
