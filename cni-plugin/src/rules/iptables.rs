//! The iptables backend (fallback when `nft` is missing): our own `MESH_PRERT`/`MESH_OUTPUT`
//! chains in the mangle and nat tables, written with one `iptables-restore --noflush` run.
//!
//! Declaring a chain (`:MESH_PRERT - [0:0]`) in a `--noflush` restore flushes it, so re-applying
//! rewrites our chains without touching anyone else's; the jumps from the built-in chains are
//! added only when missing (and duplicates removed), based on the current `iptables-save`.

use std::collections::BTreeMap;

use super::{Backend, CheckReport, Hook, PodRule, RulesError};
use crate::exec;
use crate::netns::Netns;

/// Seconds `iptables-restore` waits for the xtables lock (legacy iptables) before failing.
const LOCK_WAIT_SECS: &str = "5";

/// Our chain jumped to from the built-in `PREROUTING` chains.
pub const PRERT_CHAIN: &str = "MESH_PRERT";
/// Our chain jumped to from the built-in `OUTPUT` chains.
pub const OUTPUT_CHAIN: &str = "MESH_OUTPUT";

/// `(table, built-in chain, our chain)` for `hook`.
pub fn location(hook: Hook) -> (&'static str, &'static str, &'static str) {
    match hook {
        Hook::ManglePrerouting => ("mangle", "PREROUTING", PRERT_CHAIN),
        Hook::NatPrerouting => ("nat", "PREROUTING", PRERT_CHAIN),
        Hook::MangleOutput => ("mangle", "OUTPUT", OUTPUT_CHAIN),
        Hook::NatOutput => ("nat", "OUTPUT", OUTPUT_CHAIN),
    }
}

const TABLES: [&str; 2] = ["mangle", "nat"];

/// The parts of an `iptables-save` dump we look at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SaveState {
    /// table -> chains declared in it.
    pub chains: BTreeMap<String, Vec<String>>,
    /// table -> `(chain, rule text after "-A <chain> ")`, in order.
    pub rules: BTreeMap<String, Vec<(String, String)>>,
}

impl SaveState {
    /// Parses `iptables-save` output.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let mut state = SaveState::default();
        let mut table: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('*') {
                table = Some(name.to_string());
                state.chains.entry(name.to_string()).or_default();
            } else if line == "COMMIT" {
                table = None;
            } else if let (Some(t), Some(decl)) = (&table, line.strip_prefix(':')) {
                let chain = decl.split_whitespace().next().unwrap_or_default();
                state
                    .chains
                    .entry(t.clone())
                    .or_default()
                    .push(chain.to_string());
            } else if let (Some(t), Some(rule)) = (&table, line.strip_prefix("-A ")) {
                let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
                state
                    .rules
                    .entry(t.clone())
                    .or_default()
                    .push((chain.to_string(), spec.to_string()));
            } else if !line.is_empty() && !line.starts_with('#') {
                return Err(RulesError::Parse {
                    tool: "iptables-save",
                    detail: format!("unexpected line {line:?}"),
                });
            }
        }
        Ok(state)
    }

    pub(crate) fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.chains
            .get(table)
            .is_some_and(|c| c.iter().any(|x| x == chain))
    }

    pub(crate) fn rules_of<'a>(
        &'a self,
        table: &str,
        chain: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .get(table)
            .into_iter()
            .flatten()
            .filter(move |(c, _)| c == chain)
            .map(|(_, spec)| spec.as_str())
    }

    pub(crate) fn jump_count(&self, table: &str, builtin: &str, ours: &str) -> usize {
        let jump = format!("-j {ours}");
        self.rules_of(table, builtin).filter(|s| *s == jump).count()
    }
}

/// Our (table, built-in chain, our chain) triples that exist.
fn our_chains() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    Hook::ALL.into_iter().map(location)
}

/// The `iptables-restore --noflush` payload that (re)writes our chains with `rules` given the
/// current state (to add missing jumps and drop duplicate ones).
pub fn render_apply(rules: &[PodRule], state: &SaveState) -> String {
    let mut out = String::new();
    for table in TABLES {
        out.push_str(&format!("*{table}\n"));
        let hooks: Vec<_> = our_chains().filter(|(t, _, _)| *t == table).collect();
        for (_, _, ours) in &hooks {
            out.push_str(&format!(":{ours} - [0:0]\n"));
        }
        for rule in rules.iter().filter(|r| location(r.hook).0 == table) {
            out.push_str(&format!(
                "-A {} {} -m comment --comment \"{}\" {}\n",
                location(rule.hook).2,
                rule.ipt_match,
                rule.comment(Backend::Iptables),
                rule.ipt_target,
            ));
        }
        for (_, builtin, ours) in &hooks {
            match state.jump_count(table, builtin, ours) {
                0 => out.push_str(&format!("-I {builtin} 1 -j {ours}\n")),
                n => {
                    for _ in 1..n {
                        out.push_str(&format!("-D {builtin} -j {ours}\n"));
                    }
                }
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The payload that removes our jumps and chains, or `None` when nothing of ours exists.
pub fn render_remove(state: &SaveState) -> Option<String> {
    let mut out = String::new();
    for table in TABLES {
        let mut body = String::new();
        let hooks: Vec<_> = our_chains().filter(|(t, _, _)| *t == table).collect();
        for (_, builtin, ours) in &hooks {
            for _ in 0..state.jump_count(table, builtin, ours) {
                body.push_str(&format!("-D {builtin} -j {ours}\n"));
            }
        }
        for (_, _, ours) in &hooks {
            if state.has_chain(table, ours) {
                body.push_str(&format!(":{ours} - [0:0]\n-X {ours}\n"));
            }
        }
        if !body.is_empty() {
            out.push_str(&format!("*{table}\n{body}COMMIT\n"));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Reads the current rules of `netns`.
pub fn save(netns: &Netns) -> Result<SaveState, RulesError> {
    let text = exec::run_in(netns, "iptables-save", &[], None)
        .map_err(RulesError::tool("reading the iptables rules"))?;
    SaveState::parse(&text)
}

pub(crate) fn restore(netns: &Netns, payload: &str, what: &'static str) -> Result<(), RulesError> {
    exec::run_in(
        netns,
        "iptables-restore",
        &["--noflush", "-w", LOCK_WAIT_SECS],
        Some(payload),
    )
    .map_err(RulesError::tool(what))?;
    Ok(())
}

/// (Re)writes our chains in `netns` with `rules`.
pub fn apply(netns: &Netns, rules: &[PodRule]) -> Result<(), RulesError> {
    let state = save(netns)?;
    restore(
        netns,
        &render_apply(rules, &state),
        "applying the iptables redirect rules",
    )
}

/// Removes our jumps and chains from `netns`.
pub fn remove(netns: &Netns) -> Result<(), RulesError> {
    match render_remove(&save(netns)?) {
        Some(payload) => restore(netns, &payload, "removing the iptables redirect rules"),
        None => Ok(()),
    }
}

/// Compares the rules in `netns` with `rules`.
pub fn check(netns: &Netns, rules: &[PodRule]) -> Result<CheckReport, RulesError> {
    Ok(compare(&save(netns)?, rules))
}

/// Compares a parsed dump with `rules` by their comments, chain by chain, plus our jumps.
pub fn compare(state: &SaveState, rules: &[PodRule]) -> CheckReport {
    let mut report = CheckReport::default();
    for table in TABLES {
        for (_, builtin, ours) in our_chains().filter(|(t, _, _)| *t == table) {
            let jump = format!("{table} {builtin} -j {ours}");
            match state.jump_count(table, builtin, ours) {
                0 => report.missing.push(jump),
                1 => report.found.push(jump),
                n => {
                    report.found.push(jump.clone());
                    report.unexpected.push(format!("{jump} ({n} times)"));
                }
            }
            let mut expected: Vec<String> = rules
                .iter()
                .filter(|r| location(r.hook) == (table, builtin, ours))
                .map(|r| r.comment(Backend::Iptables))
                .collect();
            for spec in state.rules_of(table, ours) {
                let comment = comment_of(spec);
                match expected.iter().position(|c| Some(c.as_str()) == comment) {
                    Some(i) => report.found.push(expected.swap_remove(i)),
                    None => report.unexpected.push(format!("{table} {ours}: {spec}")),
                }
            }
            report.missing.extend(expected);
        }
    }
    report
}

/// The value of `--comment` in a saved rule (quoted or not).
pub(crate) fn comment_of(spec: &str) -> Option<&str> {
    let rest = &spec[spec.find("--comment ")? + "--comment ".len()..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split_whitespace().next(),
    }
}
