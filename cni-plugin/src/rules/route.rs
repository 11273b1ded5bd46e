//! The policy route in the pod netns: packets carrying [`CONNMARK`] (replies to connections
//! ztunnel made with the client's address) are looked up in table [`ROUTE_TABLE`], which delivers
//! everything locally via `lo`, so they reach ztunnel's transparent socket.
//!
//! `ip rule add` is not idempotent (EEXIST), so we read `ip -j rule show` first; the route uses
//! `ip route replace`.

use serde::Deserialize;

use super::{CONNMARK, MARK_MASK, ROUTE_TABLE, RULE_PRIORITY, RulesError};
use crate::exec::{self, ExecError};
use crate::netns::Netns;

#[derive(Debug, Deserialize)]
struct RuleJson {
    #[serde(default)]
    fwmark: Option<String>,
    #[serde(default)]
    fwmask: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    priority: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RouteJson {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

fn rule_args() -> [String; 6] {
    [
        "fwmark".into(),
        format!("{CONNMARK:#x}/{MARK_MASK:#x}"),
        "pref".into(),
        RULE_PRIORITY.to_string(),
        "lookup".into(),
        ROUTE_TABLE.to_string(),
    ]
}

fn route_args() -> [String; 6] {
    [
        "local".into(),
        "0.0.0.0/0".into(),
        "dev".into(),
        "lo".into(),
        "table".into(),
        ROUTE_TABLE.to_string(),
    ]
}

fn ip(netns: &Netns, args: &[&str], what: &'static str) -> Result<String, RulesError> {
    exec::run_in(netns, "ip", args, None).map_err(RulesError::tool(what))
}

fn ip_with(
    netns: &Netns,
    head: &[&str],
    tail: &[String],
    what: &'static str,
) -> Result<(), RulesError> {
    let args: Vec<&str> = head
        .iter()
        .copied()
        .chain(tail.iter().map(String::as_str))
        .collect();
    ip(netns, &args, what).map(|_| ())
}

/// Parses `ip -j -4 rule show` and counts our rules.
pub fn count_rules(json: &str) -> Result<usize, RulesError> {
    let rules: Vec<RuleJson> = parse_json("ip -j rule show", json)?;
    let (mark, mask, table) = (
        format!("{CONNMARK:#x}"),
        format!("{MARK_MASK:#x}"),
        ROUTE_TABLE.to_string(),
    );
    Ok(rules
        .iter()
        .filter(|r| {
            r.fwmark.as_deref() == Some(&mark)
                && r.fwmask.as_deref() == Some(&mask)
                && r.table.as_deref() == Some(&table)
                && r.priority == Some(RULE_PRIORITY)
        })
        .count())
}

/// Parses `ip -j -4 route show table 100` and tells whether our local default route is there.
pub fn has_local_route(json: &str) -> Result<bool, RulesError> {
    let routes: Vec<RouteJson> = parse_json("ip -j route show", json)?;
    Ok(routes.iter().any(|r| {
        r.kind.as_deref() == Some("local")
            && r.dst.as_deref() == Some("default")
            && r.dev.as_deref() == Some("lo")
    }))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    tool: &'static str,
    json: &str,
) -> Result<Vec<T>, RulesError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json).map_err(|e| RulesError::Parse {
        tool,
        detail: e.to_string(),
    })
}

fn rule_count(netns: &Netns) -> Result<usize, RulesError> {
    count_rules(&ip(
        netns,
        &["-j", "-4", "rule", "show"],
        "listing ip rules",
    )?)
}

fn route_present(netns: &Netns) -> Result<bool, RulesError> {
    let table = ROUTE_TABLE.to_string();
    match exec::run_in(
        netns,
        "ip",
        &["-j", "-4", "route", "show", "table", &table],
        None,
    ) {
        Ok(json) => has_local_route(&json),
        Err(err) if table_missing(&err) => Ok(false),
        Err(err) => Err(RulesError::tool("listing routes of table 100")(err)),
    }
}

/// `ip route show table N` fails when the table was never created.
fn table_missing(err: &ExecError) -> bool {
    err.stderr()
        .is_some_and(|s| s.contains("table does not exist"))
}

/// Adds the ip rule (if missing) and the local route (replace) in `netns`.
pub fn ensure(netns: &Netns) -> Result<(), RulesError> {
    if rule_count(netns)? == 0 {
        ip_with(
            netns,
            &["-4", "rule", "add"],
            &rule_args(),
            "adding the ip rule",
        )?;
    }
    ip_with(
        netns,
        &["-4", "route", "replace"],
        &route_args(),
        "adding the local route of table 100",
    )
}

/// Deletes the ip rule (every copy) and the local route from `netns`, if present.
pub fn remove(netns: &Netns) -> Result<(), RulesError> {
    for _ in 0..rule_count(netns)? {
        ip_with(
            netns,
            &["-4", "rule", "del"],
            &rule_args(),
            "deleting the ip rule",
        )?;
    }
    if route_present(netns)? {
        ip_with(
            netns,
            &["-4", "route", "del"],
            &route_args(),
            "deleting the local route of table 100",
        )?;
    }
    Ok(())
}

/// Whether the ip rule and the local route are present in `netns`.
pub fn present(netns: &Netns) -> Result<(bool, bool), RulesError> {
    Ok((rule_count(netns)? > 0, route_present(netns)?))
}
