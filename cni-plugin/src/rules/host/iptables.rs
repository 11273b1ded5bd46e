//! Host SNAT with iptables (fallback): chain `MESH_HOST_POSTRT` in the nat table, one rule per
//! enrolled pod IP, jumped to from `POSTROUTING`.

use std::net::Ipv4Addr;

use super::{COMMENT, snat_to};
use crate::netns::Netns;
use crate::rules::RulesError;
use crate::rules::iptables::{SaveState, comment_of, restore, save};

/// Our chain in the node's nat table.
pub const CHAIN: &str = "MESH_HOST_POSTRT";

/// The rule spec (after `-A CHAIN`) for `ip`, in the form `iptables-save` prints it.
pub fn rule_spec(ip: Ipv4Addr) -> String {
    format!(
        "-d {ip}/32 -p tcp -m owner --socket-exists -m comment --comment \"{COMMENT}\" \
         -j SNAT --to-source {}",
        snat_to()
    )
}

/// The pod IPs of our rules in a parsed dump, with duplicates.
pub fn ips_in(state: &SaveState) -> Vec<Ipv4Addr> {
    state
        .rules_of("nat", CHAIN)
        .filter(|spec| comment_of(spec) == Some(COMMENT))
        .filter_map(|spec| {
            let dst = spec.strip_prefix("-d ")?.split_whitespace().next()?;
            dst.strip_suffix("/32")?.parse().ok()
        })
        .collect()
}

/// The payload adding the chain/jump if missing and `ip` if missing; `None` if all is there.
pub fn render_add(state: &SaveState, ip: Ipv4Addr) -> Option<String> {
    let mut body = String::new();
    if !state.has_chain("nat", CHAIN) {
        body.push_str(&format!(":{CHAIN} - [0:0]\n"));
    }
    if state.jump_count("nat", "POSTROUTING", CHAIN) == 0 {
        body.push_str(&format!("-A POSTROUTING -j {CHAIN}\n"));
    }
    if !ips_in(state).contains(&ip) {
        body.push_str(&format!("-A {CHAIN} {}\n", rule_spec(ip)));
    }
    (!body.is_empty()).then(|| format!("*nat\n{body}COMMIT\n"))
}

/// The payload deleting every rule for `ip`; `None` if there is none.
pub fn render_remove(state: &SaveState, ip: Ipv4Addr) -> Option<String> {
    let n = ips_in(state).iter().filter(|x| **x == ip).count();
    (n > 0).then(|| {
        let del = format!("-D {CHAIN} {}\n", rule_spec(ip)).repeat(n);
        format!("*nat\n{del}COMMIT\n")
    })
}

/// See [`super::add_pod_ip`].
pub fn add_pod_ip(node: &Netns, ip: Ipv4Addr) -> Result<(), RulesError> {
    match render_add(&save(node)?, ip) {
        Some(p) => restore(node, &p, "adding a pod IP to the host probe SNAT"),
        None => Ok(()),
    }
}

/// See [`super::remove_pod_ip`].
pub fn remove_pod_ip(node: &Netns, ip: Ipv4Addr) -> Result<(), RulesError> {
    match render_remove(&save(node)?, ip) {
        Some(p) => restore(node, &p, "removing a pod IP from the host probe SNAT"),
        None => Ok(()),
    }
}

/// See [`super::pod_ips`].
pub fn pod_ips(node: &Netns) -> Result<Vec<Ipv4Addr>, RulesError> {
    Ok(ips_in(&save(node)?))
}

/// See [`super::uninstall`].
pub fn uninstall(node: &Netns) -> Result<(), RulesError> {
    let state = save(node)?;
    let mut body = "-D POSTROUTING -j MESH_HOST_POSTRT\n".repeat(state.jump_count(
        "nat",
        "POSTROUTING",
        CHAIN,
    ));
    if state.has_chain("nat", CHAIN) {
        body.push_str(&format!(":{CHAIN} - [0:0]\n-X {CHAIN}\n"));
    }
    if body.is_empty() {
        return Ok(());
    }
    restore(
        node,
        &format!("*nat\n{body}COMMIT\n"),
        "deleting the host probe SNAT chain",
    )
}
