//! A ztunnel's `/config_dump` (`{version, config, pods, certificates}`, see ztunnel's `app.rs`)
//! parsed once, and its sections as tables or raw JSON.

use std::net::IpAddr;

use mesh_api::{ConfigSnapshot, WaypointRef};
use serde::Deserialize;

use super::ZtunnelError;
use super::table::render;

/// Sections of `meshctl ztunnel config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Section {
    /// Every section.
    #[default]
    All,
    /// Workloads (pods) the ztunnel knows.
    Workloads,
    /// Services.
    Services,
    /// AuthorizationPolicies and PeerAuthentications.
    Policies,
    /// Workload certificates the ztunnel holds.
    Certificates,
}

/// A certificate entry of the dump.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertEntry {
    /// SPIFFE identity.
    pub identity: String,
    /// Validity start, seconds since the epoch.
    pub not_before: u64,
    /// Validity end, seconds since the epoch.
    pub not_after: u64,
}

/// A parsed `/config_dump`.
#[derive(Debug, Clone)]
pub struct ConfigDump {
    /// The JSON as received.
    pub raw: serde_json::Value,
    /// Config version the ztunnel runs.
    pub version: u64,
    /// The validated config.
    pub config: ConfigSnapshot,
    /// Certificates.
    pub certificates: Vec<CertEntry>,
}

impl ConfigDump {
    /// Parses the body of `/config_dump` from `who`.
    pub fn parse(body: &[u8], who: &str) -> Result<Self, ZtunnelError> {
        let bad = |detail: String| ZtunnelError::Parse {
            who: who.to_owned(),
            detail,
        };
        let raw: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
        Self::from_value(raw).map_err(bad)
    }

    /// Interprets an already parsed dump; the error says which part is wrong.
    pub fn from_value(raw: serde_json::Value) -> Result<Self, String> {
        let config: ConfigSnapshot = serde_json::from_value(raw["config"].clone())
            .map_err(|e| format!("`config` is not a mesh config: {e}"))?;
        let certificates = match raw.get("certificates") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(c) => serde_json::from_value(c.clone())
                .map_err(|e| format!("`certificates` is not a certificate list: {e}"))?,
        };
        Ok(Self {
            version: raw["version"].as_u64().unwrap_or(0),
            raw,
            config,
            certificates,
        })
    }

    /// The section as raw JSON (pretty, newline-terminated).
    pub fn json(&self, section: Section) -> String {
        let c = &self.raw["config"];
        let v = match section {
            Section::All => self.raw.clone(),
            Section::Workloads => c["workloads"].clone(),
            Section::Services => c["services"].clone(),
            Section::Policies => serde_json::json!({
                "authorizationPolicies": c["authorizationPolicies"],
                "peerAuthentications": c["peerAuthentications"],
            }),
            Section::Certificates => self.raw["certificates"].clone(),
        };
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    /// The section as a table (every section, titled, for [`Section::All`]).
    pub fn table(&self, section: Section) -> String {
        match section {
            Section::Workloads => self.workloads(),
            Section::Services => self.services(),
            Section::Policies => self.policies(),
            Section::Certificates => self.certificates(),
            Section::All => format!(
                "CONFIG VERSION {}\n\nWORKLOADS\n{}\nSERVICES\n{}\nPOLICIES\n{}\nCERTIFICATES\n{}",
                self.version,
                self.workloads(),
                self.services(),
                self.policies(),
                self.certificates()
            ),
        }
    }

    fn workloads(&self) -> String {
        let mut rows = vec![header(&[
            "NAMESPACE",
            "NAME",
            "ADDRESS",
            "NODE",
            "PROTOCOL",
            "WAYPOINT",
        ])];
        for w in self.config.workloads() {
            rows.push(vec![
                w.namespace.clone(),
                w.name.clone(),
                join(w.addresses.iter()),
                or_dash(&w.node),
                format!("{:?}", w.protocol).to_uppercase(),
                self.waypoint_name(w.waypoint.as_ref()),
            ]);
        }
        render(&rows)
    }

    fn services(&self) -> String {
        let mut rows = vec![header(&[
            "NAMESPACE",
            "NAME",
            "VIP",
            "PORTS",
            "ENDPOINTS",
            "WAYPOINT",
        ])];
        for s in self.config.services() {
            let ports = s.ports.iter().map(|p| {
                let proto = p
                    .app_protocol
                    .as_deref()
                    .map(|a| format!("/{a}"))
                    .unwrap_or_default();
                format!("{}->{}{proto}", p.port, p.target_port)
            });
            rows.push(vec![
                s.namespace.clone(),
                s.name.clone(),
                join(s.vips.iter()),
                join(ports),
                s.endpoints.len().to_string(),
                self.waypoint_name(s.waypoint.as_ref()),
            ]);
        }
        render(&rows)
    }

    fn policies(&self) -> String {
        let root = self.config.root_namespace();
        let mut rows = vec![header(&["NAMESPACE", "NAME", "KIND", "ACTION", "SCOPE"])];
        for p in self.config.policies() {
            let scope = if p.is_waypoint_policy() {
                "Waypoint"
            } else {
                scope(p.namespace == root, p.selector.is_some())
            };
            rows.push(vec![
                p.namespace.clone(),
                p.name.clone(),
                "AuthorizationPolicy".to_owned(),
                p.action.to_string(),
                scope.to_owned(),
            ]);
        }
        for p in self.config.peer_authentications() {
            let mode = serde_json::to_value(p.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            rows.push(vec![
                p.namespace.clone(),
                p.name.clone(),
                "PeerAuthentication".to_owned(),
                mode,
                scope(p.namespace == root, p.selector.is_some()).to_owned(),
            ]);
        }
        render(&rows)
    }

    fn certificates(&self) -> String {
        let mut rows = vec![header(&["IDENTITY", "NOT-BEFORE", "NOT-AFTER"])];
        for c in &self.certificates {
            rows.push(vec![
                c.identity.clone(),
                rfc3339(c.not_before),
                rfc3339(c.not_after),
            ]);
        }
        render(&rows)
    }

    /// `namespace/name` of the waypoint at `wp` (its workload, or a service with that VIP), or
    /// the address when the config does not name it; `-` for none.
    pub fn waypoint_name(&self, wp: Option<&WaypointRef>) -> String {
        waypoint_name(&self.config, wp)
    }
}

/// See [`ConfigDump::waypoint_name`].
pub fn waypoint_name(config: &ConfigSnapshot, wp: Option<&WaypointRef>) -> String {
    let Some(wp) = wp else {
        return "-".to_owned();
    };
    let ip: IpAddr = wp.address;
    if let Some(s) = config.service_by_vip(ip) {
        return format!("{}/{}", s.namespace, s.name);
    }
    if let Some(w) = config.workload_by_ip(ip) {
        return format!("{}/{}", w.namespace, w.name);
    }
    format!("{}:{}", wp.address, wp.port)
}

fn scope(root: bool, selector: bool) -> &'static str {
    match (root, selector) {
        (true, false) => "Global",
        (_, true) => "WorkloadSelector",
        (false, false) => "Namespace",
    }
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600 + 3661), "2026-11-22T01:01:01Z");
    }

    #[test]
    fn a_dump_that_is_not_a_mesh_config_is_a_clear_error() {
        let e = ConfigDump::parse(br#"{"version": 1, "config": {"workloads": 3}}"#, "node-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node-1") && e.contains("`config`"), "{e}");
        let e = ConfigDump::parse(b"<html>", "node-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}
