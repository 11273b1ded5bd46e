//! kube-proxy-like DNAT of local mode, for traffic the mesh does not capture (pods not enrolled,
//! processes of the node netns): an nftables table of our own, [`TABLE`], in every node netns
//! (never the root netns), rebuilt whole in one `nft -f` transaction whenever services or ready
//! endpoints change.
//!
//! A pod's packet to a VIP leaves the pod by its default route, the bridge gateway `10.N.0.1` in
//! its node's netns, where `prerouting` DNATs it to one ready endpoint (`numgen random` spread)
//! and its target port; the node then routes it (to the local bridge or over the fabric), and the
//! replies come back through the same node, whose conntrack un-NATs them. One case needs more:
//! when client and endpoint sit on the same node bridge the reply would be bridged straight
//! back, bypassing the node's conntrack, so DNATed traffic from the node's pod CIDR out of the
//! bridge is masqueraded to the gateway address (also covers a pod reaching itself through its
//! service). Enrolled pods' traffic is captured by ztunnel inside the pod netns first and never
//! reaches these rules with a VIP. A VIP without ready endpoints is not matched, and the node has
//! no route for the service CIDR: the client gets an ICMP "network unreachable" at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::cni::CNI_BRIDGE;
use super::network::pod_cidr;
use super::services::{PortEndpoints, ServiceView};
use super::sys::{self, SysError};

/// Our table (family `ip`) in each node netns.
pub const TABLE: &str = "meshctl_services";

/// One service port with a VIP and its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipRule {
    /// `<ns>/<name>:<port>`, as a comment.
    pub service: String,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The port and its endpoints.
    pub port: PortEndpoints,
}

/// The rules of `services` (with their endpoints per port, as [`super::services::endpoints`]
/// gives them); headless services (no VIP) have none.
pub fn vip_rules(services: &[(ServiceView, Vec<PortEndpoints>)]) -> Vec<VipRule> {
    let mut rules = Vec::new();
    for (svc, ports) in services {
        let Some(vip) = svc.cluster_ip else { continue };
        for port in ports {
            rules.push(VipRule {
                service: format!("{}/{}:{}", svc.namespace, svc.name, port.port),
                vip,
                port: port.clone(),
            });
        }
    }
    rules
}

/// The nft script of node `n`: creates the table if missing, deletes it and recreates it with
/// `rules`, all in one transaction.
pub fn render(n: u8, rules: &[VipRule]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );
    let _ = writeln!(
        s,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ct status dnat ip saddr {} oifname \"{CNI_BRIDGE}\" masquerade comment \"same-bridge replies must come back through the node\"\n  }}",
        pod_cidr(n)
    );
    let mut chains = String::new();
    let _ = writeln!(s, "  chain services {{");
    for (i, rule) in rules.iter().enumerate() {
        if rule.port.endpoints.is_empty() {
            continue;
        }
        let proto = rule.port.protocol.nft();
        let _ = writeln!(
            s,
            "    ip daddr {} {proto} dport {} goto svc_{i} comment \"{}\"",
            rule.vip, rule.port.port, rule.service
        );
        let targets: Vec<String> = rule
            .port
            .endpoints
            .iter()
            .map(|ep| format!("{} . {}", ep.ip(), ep.port()))
            .collect();
        let _ = if targets.len() == 1 {
            writeln!(
                chains,
                "  chain svc_{i} {{\n    meta l4proto {proto} dnat to {}:{}\n  }}",
                rule.port.endpoints[0].ip(),
                rule.port.endpoints[0].port()
            )
        } else {
            let map: Vec<String> = targets
                .iter()
                .enumerate()
                .map(|(k, t)| format!("{k} : {t}"))
                .collect();
            writeln!(
                chains,
                "  chain svc_{i} {{\n    meta l4proto {proto} dnat to numgen random mod {} map {{ {} }}\n  }}",
                targets.len(),
                map.join(", ")
            )
        };
    }
    let _ = writeln!(s, "  }}");
    s.push_str(&chains);
    s.push_str("}\n");
    s
}

/// Applies `script` with `nft -f -` inside namespace `netns`.
pub fn apply(netns: &str, script: &str) -> Result<(), SysError> {
    use std::io::Write;
    let cmd = format!("ip netns exec {netns} nft -f -");
    let fail = |detail: String| SysError::Command {
        cmd: cmd.clone(),
        detail,
    };
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
}

/// Keeps every node's table in line with the services, applying a node's script only when it
/// changed (a failed apply is retried at the next sync).
#[derive(Debug, Default)]
pub struct KubeProxy {
    applied: BTreeMap<String, String>,
}

impl KubeProxy {
    /// Renders and applies the rules for every `(node number, netns)`.
    pub fn sync(&mut self, nodes: &[(u8, String)], rules: &[VipRule]) -> Result<(), SysError> {
        let mut first_err = None;
        for (n, netns) in nodes {
            let script = render(*n, rules);
            if self.applied.get(netns) == Some(&script) {
                continue;
            }
            match apply(netns, &script) {
                Ok(()) => {
                    self.applied.insert(netns.clone(), script);
                }
                Err(e) => {
                    self.applied.remove(netns);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Whether nft is usable here (root and the tool present); tests that apply scripts need it.
pub fn nft_usable() -> bool {
    nix::unistd::geteuid().is_root() && sys::on_path("nft")
}

#[cfg(test)]
mod tests;
