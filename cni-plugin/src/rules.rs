//! Redirect rules inside an enrolled pod's network namespace (DESIGN.md 4.4) and the node-side
//! SNAT of kubelet probes ([`host`]).
//!
//! One model ([`pod_rules`]) lists the rules in the order of the design, each with its nftables
//! and its iptables spelling side by side; [`nft`] and [`iptables`] render and apply it, [`route`]
//! adds the policy route that sends ztunnel's transparent traffic back to it. Every rule carries a
//! comment `mesh:<key>:<hash>` (hash of its text), so [`check`] can tell which of our rules are
//! present, missing or stale, and which rules in our chains are not ours (drift detection).
//!
//! IPv4 only: the design's addresses (127.0.0.1, 169.254.7.127) are IPv4 and so are the pods of
//! the local mode; IPv6 capture would need the same set for `ip6`/`ip6tables` and `ip -6`.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::exec::ExecError;
use crate::netns::Netns;

pub mod host;
pub mod iptables;
pub mod nft;
pub mod route;

/// Mark that ztunnel sets (SO_MARK) on every socket it creates for a pod.
pub const ZTUNNEL_MARK: u32 = 0x539;
/// Mask of the mark bits we own (the rest belongs to others, e.g. kube-proxy).
pub const MARK_MASK: u32 = 0xfff;
/// Connection mark of connections ztunnel set up; restored onto packets to route them to lo.
pub const CONNMARK: u32 = 0x111;
/// Source address the node SNATs kubelet probes to, so the pod lets them skip the proxy.
pub const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(169, 254, 7, 127);
/// ztunnel's outbound capture port in the pod netns.
pub const OUTBOUND_PORT: u16 = 15001;
/// ztunnel's inbound plaintext capture port in the pod netns.
pub const INBOUND_PLAINTEXT_PORT: u16 = 15006;
/// ztunnel's inbound HBONE port in the pod netns (never redirected).
pub const HBONE_PORT: u16 = 15008;
/// ztunnel's DNS proxy port in the pod netns.
pub const DNS_PORT: u16 = 15053;
/// Routing table holding `local 0.0.0.0/0 dev lo` for packets carrying [`CONNMARK`].
pub const ROUTE_TABLE: u32 = 100;
/// Priority of our `ip rule` (the one Istio uses, just before `main` at 32766).
pub const RULE_PRIORITY: u32 = 32764;

/// Errors of applying, removing and checking rules.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A tool failed or could not run; the inner error names the command and its stderr.
    #[error("{what}: {source}")]
    Tool {
        /// What we were doing.
        what: &'static str,
        /// The tool failure.
        source: ExecError,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse the output of `{tool}`: {detail} (unsupported tool version?)")]
    Parse {
        /// The tool.
        tool: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Neither `nft` nor `iptables-restore` is on PATH.
    #[error("neither `nft` nor `iptables-restore` found on PATH: install nftables or iptables")]
    NoBackend,
}

impl RulesError {
    pub(crate) fn tool(what: &'static str) -> impl FnOnce(ExecError) -> Self {
        move |source| RulesError::Tool { what, source }
    }
}

/// Which firewall tool programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `nft`: our own `ip mesh` table, replaced atomically.
    Nft,
    /// `iptables-restore --noflush` into our own `MESH_*` chains (fallback when nft is missing).
    Iptables,
}

impl Backend {
    /// Picks `nft` when it is on PATH, else `iptables-restore`.
    pub fn detect() -> Result<Self, RulesError> {
        if on_path("nft") {
            Ok(Backend::Nft)
        } else if on_path("iptables-restore") {
            Ok(Backend::Iptables)
        } else {
            Err(RulesError::NoBackend)
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// Options of the pod rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedirectOptions {
    /// Capture DNS (UDP/TCP port 53) to ztunnel's DNS proxy on 15053 (rule 6). Off by default.
    pub dns_capture: bool,
    /// Leave the pod's inbound traffic alone (Istio's pod annotation
    /// `ambient.istio.io/bypass-inbound-capture`): rules 2 and 3 are left out, so plaintext
    /// connections reach the app directly; HBONE to 15008 still reaches ztunnel and the pod's
    /// outbound traffic is still captured.
    pub bypass_inbound: bool,
}

/// The netfilter hook (and iptables table) a rule lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// mangle PREROUTING.
    ManglePrerouting,
    /// nat PREROUTING.
    NatPrerouting,
    /// mangle OUTPUT.
    MangleOutput,
    /// nat OUTPUT.
    NatOutput,
}

impl Hook {
    /// All hooks, in the order their chains are rendered.
    pub const ALL: [Hook; 4] = [
        Hook::ManglePrerouting,
        Hook::NatPrerouting,
        Hook::MangleOutput,
        Hook::NatOutput,
    ];
}

/// One redirect rule of DESIGN.md 4.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRule {
    /// The number of the rule in DESIGN.md 4.4.
    pub step: u8,
    /// Stable key, e.g. `3-inbound-redirect`.
    pub key: &'static str,
    /// Where it lives.
    pub hook: Hook,
    /// Match and verdict in nft syntax (without the comment).
    pub nft: String,
    /// Matches in iptables syntax (without `-A <chain>` and the comment).
    pub ipt_match: String,
    /// Target in iptables syntax (`-j ...`).
    pub ipt_target: String,
}

impl PodRule {
    /// The comment that identifies this rule in the given backend's spelling.
    pub fn comment(&self, backend: Backend) -> String {
        let text = match backend {
            Backend::Nft => self.nft.clone(),
            Backend::Iptables => format!("{} {}", self.ipt_match, self.ipt_target),
        };
        format!("mesh:{}:{:08x}", self.key, fnv1a(text.as_bytes()))
    }
}

/// FNV-1a (32 bit): a short fingerprint of a rule's text, so changed rules show up as drift.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The pod rules of DESIGN.md 4.4, in order.
pub fn pod_rules(opts: &RedirectOptions) -> Vec<PodRule> {
    let (mark, mask, conn, probe) = (ZTUNNEL_MARK, MARK_MASK, CONNMARK, PROBE_SOURCE);
    let nft_mark = format!("meta mark & {mask:#x}");
    let ipt_mark = format!("{mark:#x}/{mask:#x}");
    // Redirects (rules 3 and 9) match only connection openings (SYN without ACK). A pod that
    // had no netfilter rules before enrolment has no conntrack entries for its open
    // connections; their next packet creates a mid-stream entry whose NAT rules are evaluated
    // as for a new connection. Matching SYN keeps those connections direct and alive instead
    // of redirecting a mid-stream packet to ztunnel (which would answer with a reset).
    let nft_syn = "tcp flags & (syn | ack) == syn";
    let rule = |step, key, hook, nft: String, iptables: String| {
        let (ipt_match, ipt_target) = match iptables.split_once(" -j ") {
            Some((m, t)) => (m.to_string(), format!("-j {t}")),
            None => (iptables, String::new()),
        };
        PodRule {
            step,
            key,
            hook,
            nft,
            ipt_match,
            ipt_target,
        }
    };
    let mut rules = vec![
        rule(
            1,
            "1-mark-connmark",
            Hook::ManglePrerouting,
            format!(
                "{nft_mark} == {mark:#x} ct mark set ct mark & {:#x} | {conn:#x}",
                !mask
            ),
            format!("-m mark --mark {ipt_mark} -j CONNMARK --set-xmark {conn:#x}/{mask:#x}"),
        ),
        rule(
            2,
            "2-probe-inbound-accept",
            Hook::NatPrerouting,
            format!("ip saddr {probe} meta l4proto tcp accept"),
            format!("-s {probe}/32 -p tcp -m tcp -j ACCEPT"),
        ),
        rule(
            3,
            "3-inbound-redirect",
            Hook::NatPrerouting,
            format!(
                "ip daddr != 127.0.0.1 tcp dport != {HBONE_PORT} {nft_syn} {nft_mark} != {mark:#x} \
                 redirect to :{INBOUND_PLAINTEXT_PORT}"
            ),
            format!(
                "! -d 127.0.0.1/32 -p tcp -m tcp ! --dport {HBONE_PORT} --syn -m mark ! --mark {ipt_mark} \
                 -j REDIRECT --to-ports {INBOUND_PLAINTEXT_PORT}"
            ),
        ),
        rule(
            4,
            "4-restore-mark",
            Hook::MangleOutput,
            format!("ct mark & {mask:#x} == {conn:#x} meta mark set ct mark"),
            format!(
                "-m connmark --mark {conn:#x}/{mask:#x} \
                 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"
            ),
        ),
        rule(
            5,
            "5-probe-outbound-accept",
            Hook::NatOutput,
            format!("ip daddr {probe} meta l4proto tcp accept"),
            format!("-d {probe}/32 -p tcp -m tcp -j ACCEPT"),
        ),
    ];
    if opts.dns_capture {
        rules.push(rule(
            6,
            "6-dns-udp-redirect",
            Hook::NatOutput,
            format!(
                "oifname != \"lo\" udp dport 53 {nft_mark} != {mark:#x} redirect to :{DNS_PORT}"
            ),
            format!(
                "! -o lo -p udp -m udp --dport 53 -m mark ! --mark {ipt_mark} \
                 -j REDIRECT --to-ports {DNS_PORT}"
            ),
        ));
        rules.push(rule(
            6,
            "6-dns-tcp-redirect",
            Hook::NatOutput,
            format!(
                "ip daddr != 127.0.0.1 tcp dport 53 {nft_mark} != {mark:#x} redirect to :{DNS_PORT}"
            ),
            format!(
                "! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark {ipt_mark} \
                 -j REDIRECT --to-ports {DNS_PORT}"
            ),
        ));
    }
    rules.extend([
        rule(
            7,
            "7-ztunnel-conn-accept",
            Hook::NatOutput,
            format!("meta l4proto tcp {nft_mark} == {conn:#x} accept"),
            format!("-p tcp -m mark --mark {conn:#x}/{mask:#x} -j ACCEPT"),
        ),
        rule(
            8,
            "8-self-call-accept",
            Hook::NatOutput,
            "ip daddr != 127.0.0.1 oifname \"lo\" accept".to_string(),
            "! -d 127.0.0.1/32 -o lo -j ACCEPT".to_string(),
        ),
        rule(
            9,
            "9-outbound-redirect",
            Hook::NatOutput,
            format!(
                "meta l4proto tcp ip daddr != 127.0.0.1 {nft_syn} {nft_mark} != {mark:#x} \
                 redirect to :{OUTBOUND_PORT}"
            ),
            format!(
                "! -d 127.0.0.1/32 -p tcp -m tcp --syn -m mark ! --mark {ipt_mark} \
                 -j REDIRECT --to-ports {OUTBOUND_PORT}"
            ),
        ),
    ]);
    if opts.bypass_inbound {
        rules.retain(|r| !matches!(r.step, 2 | 3));
    }
    rules
}

/// What [`check`] found of our rules in a pod netns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Our rules/jumps that are present and current (their comments or descriptions).
    pub found: Vec<String>,
    /// Our rules/jumps that should be there and are not (or are stale versions).
    pub missing: Vec<String>,
    /// Rules inside our own table/chains that we did not put there (or duplicates).
    pub unexpected: Vec<String>,
    /// `ip rule fwmark 0x111/0xfff lookup 100` is present.
    pub ip_rule: bool,
    /// `local 0.0.0.0/0 dev lo table 100` is present.
    pub local_route: bool,
}

impl CheckReport {
    /// Everything we install is present and nothing foreign sits in our chains.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.ip_rule && self.local_route
    }

    /// Nothing of ours is left (what [`remove`] guarantees).
    pub fn is_absent(&self) -> bool {
        self.found.is_empty() && self.unexpected.is_empty() && !self.ip_rule && !self.local_route
    }
}

/// Installs (or re-installs) the pod rules and the policy route in `netns`. Idempotent: applying
/// twice leaves exactly one copy; the firewall part is replaced in one transaction.
pub fn apply(netns: &Netns, backend: Backend, opts: &RedirectOptions) -> Result<(), RulesError> {
    let rules = pod_rules(opts);
    match backend {
        Backend::Nft => nft::apply(netns, &rules)?,
        Backend::Iptables => iptables::apply(netns, &rules)?,
    }
    route::ensure(netns)
}

/// Removes everything [`apply`] added (firewall rules, ip rule, route). Idempotent.
pub fn remove(netns: &Netns, backend: Backend) -> Result<(), RulesError> {
    match backend {
        Backend::Nft => nft::remove(netns)?,
        Backend::Iptables => iptables::remove(netns)?,
    }
    route::remove(netns)
}

/// Reports which of our rules are present in `netns` (for drift detection).
pub fn check(
    netns: &Netns,
    backend: Backend,
    opts: &RedirectOptions,
) -> Result<CheckReport, RulesError> {
    let rules = pod_rules(opts);
    let mut report = match backend {
        Backend::Nft => nft::check(netns, &rules)?,
        Backend::Iptables => iptables::check(netns, &rules)?,
    };
    let (ip_rule, local_route) = route::present(netns)?;
    report.ip_rule = ip_rule;
    report.local_route = local_route;
    Ok(report)
}

#[cfg(test)]
mod tests;
