//! Host SNAT with nftables: table `ip mesh_host` with the set `pod_ips` and one rule.

use std::net::Ipv4Addr;

use super::{COMMENT, snat_to};
use crate::exec;
use crate::netns::Netns;
use crate::rules::RulesError;
use crate::rules::nft::is_missing;

/// Family and name of our table in the node netns.
pub const TABLE: &str = "ip mesh_host";
/// Name of the set of enrolled pod IPs.
pub const SET: &str = "pod_ips";

/// The script that (re)creates the table, set and rule, keeping the set's elements, and adds
/// `ip`. `meta skuid >= 0` only matches when the packet has a full socket of this namespace
/// (the kernel stops evaluating the rule otherwise), the equivalent of iptables'
/// `-m owner --socket-exists`.
pub fn render_add(ip: Ipv4Addr) -> String {
    format!(
        "table {TABLE} {{\n\
         \tset {SET} {{ type ipv4_addr; }}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         }}\n\
         flush chain {TABLE} postrouting\n\
         add rule {TABLE} postrouting meta l4proto tcp ip daddr @{SET} meta skuid >= 0 \
         snat to {} comment \"{COMMENT}\"\n\
         add element {TABLE} {SET} {{ {ip} }}\n",
        snat_to()
    )
}

/// The script that removes `ip` whether or not it is in the set (add, then delete, in one
/// transaction).
pub fn render_remove(ip: Ipv4Addr) -> String {
    format!("add element {TABLE} {SET} {{ {ip} }}\ndelete element {TABLE} {SET} {{ {ip} }}\n")
}

fn nft(node: &Netns, script: &str, what: &'static str) -> Result<(), RulesError> {
    exec::run_in(node, "nft", &["-f", "-"], Some(script)).map_err(RulesError::tool(what))?;
    Ok(())
}

/// See [`super::add_pod_ip`].
pub fn add_pod_ip(node: &Netns, ip: Ipv4Addr) -> Result<(), RulesError> {
    nft(
        node,
        &render_add(ip),
        "adding a pod IP to the host probe SNAT",
    )
}

/// See [`super::remove_pod_ip`].
pub fn remove_pod_ip(node: &Netns, ip: Ipv4Addr) -> Result<(), RulesError> {
    if list_set(node)?.is_none() {
        return Ok(());
    }
    nft(
        node,
        &render_remove(ip),
        "removing a pod IP from the host probe SNAT",
    )
}

/// See [`super::pod_ips`].
pub fn pod_ips(node: &Netns) -> Result<Vec<Ipv4Addr>, RulesError> {
    match list_set(node)? {
        Some(json) => parse_set(&json),
        None => Ok(Vec::new()),
    }
}

/// See [`super::uninstall`].
pub fn uninstall(node: &Netns) -> Result<(), RulesError> {
    nft(
        node,
        &format!("table {TABLE}\ndelete table {TABLE}\n"),
        "deleting the host probe SNAT table",
    )
}

fn list_set(node: &Netns) -> Result<Option<String>, RulesError> {
    let mut args = vec!["-j", "list", "set"];
    args.extend(TABLE.split(' '));
    args.push(SET);
    match exec::run_in(node, "nft", &args, None) {
        Ok(json) => Ok(Some(json)),
        Err(err) if is_missing(&err) => Ok(None),
        Err(err) => Err(RulesError::tool("listing the host probe SNAT set")(err)),
    }
}

/// Parses `nft -j list set` output into the set's IPv4 elements.
pub fn parse_set(json: &str) -> Result<Vec<Ipv4Addr>, RulesError> {
    let bad = |detail: String| RulesError::Parse {
        tool: "nft -j list set",
        detail,
    };
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let items = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no \"nftables\" array".into()))?;
    let mut ips = Vec::new();
    for set in items.iter().filter_map(|i| i.get("set")) {
        for elem in set
            .get("elem")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            let text = elem
                .as_str()
                .ok_or_else(|| bad(format!("unexpected element {elem}")))?;
            ips.push(
                text.parse()
                    .map_err(|_| bad(format!("bad IPv4 element {text:?}")))?,
            );
        }
    }
    Ok(ips)
}
