//! The nftables backend: our own `ip mesh` table, deleted and re-created in one `nft -f -`
//! transaction, so applying is atomic and idempotent and removing is one `delete table`.

use super::{Backend, CheckReport, Hook, PodRule, RulesError};
use crate::exec::{self, ExecError};
use crate::netns::Netns;

/// Family and name of our table in the pod netns.
pub const TABLE: &str = "ip mesh";

/// Name of our base chain for `hook`.
pub fn chain_name(hook: Hook) -> &'static str {
    match hook {
        Hook::ManglePrerouting => "prerouting_mangle",
        Hook::NatPrerouting => "prerouting_nat",
        Hook::MangleOutput => "output_mangle",
        Hook::NatOutput => "output_nat",
    }
}

/// Type, hook and priority of our base chain for `hook`, at the priorities of iptables' tables.
/// Mangle OUTPUT is a `route` chain so that a changed mark re-routes the packet, as in iptables.
fn chain_spec(hook: Hook) -> &'static str {
    match hook {
        Hook::ManglePrerouting => "type filter hook prerouting priority mangle; policy accept;",
        Hook::NatPrerouting => "type nat hook prerouting priority dstnat; policy accept;",
        Hook::MangleOutput => "type route hook output priority mangle; policy accept;",
        Hook::NatOutput => "type nat hook output priority -100; policy accept;",
    }
}

/// The `nft -f` script that replaces our table with `rules` in one transaction. Declaring the
/// table before deleting it makes the delete succeed when the table does not exist yet.
pub fn render_apply(rules: &[PodRule]) -> String {
    let mut out = format!("table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    for hook in Hook::ALL {
        out.push_str(&format!(
            "\tchain {} {{\n\t\t{}\n",
            chain_name(hook),
            chain_spec(hook)
        ));
        for rule in rules.iter().filter(|r| r.hook == hook) {
            out.push_str(&format!(
                "\t\t{} comment \"{}\"\n",
                rule.nft,
                rule.comment(Backend::Nft)
            ));
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// The `nft -f` script that deletes our table whether or not it exists.
pub fn render_remove() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}

/// Replaces our table in `netns` with `rules`.
pub fn apply(netns: &Netns, rules: &[PodRule]) -> Result<(), RulesError> {
    exec::run_in(netns, "nft", &["-f", "-"], Some(&render_apply(rules)))
        .map_err(RulesError::tool("applying the nftables redirect rules"))?;
    Ok(())
}

/// Deletes our table from `netns`.
pub fn remove(netns: &Netns) -> Result<(), RulesError> {
    exec::run_in(netns, "nft", &["-f", "-"], Some(&render_remove()))
        .map_err(RulesError::tool("removing the nftables redirect rules"))?;
    Ok(())
}

/// Lists our table in `netns`; `None` when it does not exist.
pub fn list_table(netns: &Netns) -> Result<Option<String>, RulesError> {
    let mut args = vec!["list", "table"];
    args.extend(TABLE.split(' '));
    match exec::run_in(netns, "nft", &args, None) {
        Ok(text) => Ok(Some(text)),
        Err(err) if is_missing(&err) => Ok(None),
        Err(err) => Err(RulesError::tool("listing the nftables redirect rules")(err)),
    }
}

/// Whether `nft` failed because the object does not exist (ENOENT).
pub(crate) fn is_missing(err: &ExecError) -> bool {
    err.stderr()
        .is_some_and(|s| s.contains("No such file or directory"))
}

/// Compares our table in `netns` with `rules`.
pub fn check(netns: &Netns, rules: &[PodRule]) -> Result<CheckReport, RulesError> {
    let listing = list_table(netns)?.unwrap_or_default();
    Ok(compare(&listing, rules))
}

/// Compares an `nft list table` output with `rules` by their comments, chain by chain.
pub fn compare(listing: &str, rules: &[PodRule]) -> CheckReport {
    let mut expected: Vec<(&str, String)> = rules
        .iter()
        .map(|r| (chain_name(r.hook), r.comment(Backend::Nft)))
        .collect();
    let mut report = CheckReport::default();
    let mut chain: Option<&str> = None;
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next();
            continue;
        }
        let Some(current) = chain else { continue };
        if line == "}" {
            chain = None;
            continue;
        }
        if line.is_empty() || line.starts_with("type ") || line.starts_with("policy ") {
            continue;
        }
        let comment = comment_of(line);
        match expected
            .iter()
            .position(|(c, want)| *c == current && Some(want.as_str()) == comment)
        {
            Some(i) => report.found.push(expected.swap_remove(i).1),
            None => report.unexpected.push(format!("{current}: {line}")),
        }
    }
    report.missing = expected.into_iter().map(|(_, c)| c).collect();
    report
}

/// The text of `comment "..."` at the end of an nft rule line.
fn comment_of(line: &str) -> Option<&str> {
    let start = line.rfind("comment \"")? + "comment \"".len();
    line[start..].split('"').next()
}
