//! What `meshctl explain` reports, as data (`-o json`) and as text.

use std::fmt::Write as _;

use serde::Serialize;

/// The whole explanation of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Where the config came from (a ztunnel, a file).
    pub config_source: String,
    /// The client pod.
    pub source: SourceInfo,
    /// What `<host>:<port>` resolves to.
    pub destination: DestinationInfo,
    /// The waypoint on the path, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointHop>,
    /// The workloads the connection can end at, with the decision of their ztunnel.
    pub endpoints: Vec<EndpointHop>,
    /// `allow`, `deny`, `partial` (some endpoints deny) or `passthrough`.
    pub verdict: String,
    /// Why, in one line.
    pub summary: String,
    /// Caveats (what the config cannot tell).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceInfo {
    /// `namespace/name`.
    pub pod: String,
    /// Its first address.
    pub address: String,
    /// Its node.
    pub node: String,
    /// The ztunnel capturing its traffic (`ztunnel of node X`), or why none does.
    pub ztunnel: String,
    /// SPIFFE principal it connects with (`None` when not in the mesh: plaintext).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// What the destination is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationInfo {
    /// As given.
    pub host: String,
    /// Port as given.
    pub port: u16,
    /// `service`, `workload` or `outside-mesh`.
    pub kind: String,
    /// The address the host is (VIP or pod IP), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `namespace/name` of the service or workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For a service: the target port the service port maps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
}

/// The waypoint hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointHop {
    /// `namespace/name` of the waypoint (Gateway) or its address.
    pub name: String,
    /// Its HBONE address.
    pub address: String,
    /// `service` or `workload`: what bound the traffic to it.
    pub bound_to: String,
    /// Node of its pod, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its L7 policies (`targetRefs`) with their decision for a plain request.
    pub policies: Vec<PolicyEntry>,
    /// `allow`, `deny` or `unknown`.
    pub verdict: String,
    /// The policy that decided, or why the decision is what it is.
    pub reason: String,
}

/// One destination workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHop {
    /// `namespace/name`.
    pub pod: String,
    /// Address:port connected to.
    pub address: String,
    /// Node (its ztunnel decides).
    pub node: String,
    /// `HBONE (mTLS as <principal>)`, `plaintext` or `passthrough (not in the mesh)`.
    pub connection: String,
    /// PeerAuthentication mode at this port: `STRICT` or `PERMISSIVE`.
    pub mtls_mode: String,
    /// The L4 policies its ztunnel evaluates, in evaluation order.
    pub policies: Vec<PolicyEntry>,
    /// `allow` or `deny`.
    pub verdict: String,
    /// What decided.
    pub reason: String,
}

/// A policy considered at a hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntry {
    /// `namespace/name`.
    pub name: String,
    /// `ALLOW` or `DENY`.
    pub action: String,
    /// Whether it matches this connection.
    pub matches: bool,
}

impl Explanation {
    /// The explanation as text for people.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let s = &self.source;
        let _ = writeln!(o, "config:      {}", self.config_source);
        let _ = writeln!(
            o,
            "source:      {} ({}) on node {}, {}",
            s.pod, s.address, s.node, s.ztunnel
        );
        let _ = match &s.identity {
            Some(id) => writeln!(o, "identity:    {id}"),
            None => writeln!(o, "identity:    none (not in the mesh: plaintext)"),
        };
        let d = &self.destination;
        let what = match (&d.name, &d.address) {
            (Some(n), Some(a)) => format!("{} {n} ({a})", d.kind),
            (None, Some(a)) => format!("{} {a}", d.kind),
            _ => d.kind.clone(),
        };
        let _ = writeln!(o, "destination: {}:{} -> {what}", d.host, d.port);
        if let Some(t) = d.target_port {
            let _ = writeln!(o, "             port {} -> target port {t}", d.port);
        }
        match &self.waypoint {
            Some(w) => {
                let node = w
                    .node
                    .as_deref()
                    .map(|n| format!(" on node {n}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "waypoint:    {} ({}{node}), bound to the {}",
                    w.name, w.address, w.bound_to
                );
                policies(&mut o, &w.policies);
                let _ = writeln!(o, "  verdict:   {} ({})", w.verdict, w.reason);
            }
            None => {
                let _ = writeln!(o, "waypoint:    none");
            }
        }
        for e in &self.endpoints {
            let _ = writeln!(
                o,
                "endpoint:    {} {} on node {} via {}",
                e.pod, e.address, e.node, e.connection
            );
            let _ = writeln!(o, "  mTLS mode: {}", e.mtls_mode);
            policies(&mut o, &e.policies);
            let _ = writeln!(o, "  verdict:   {} ({})", e.verdict, e.reason);
        }
        let _ = writeln!(
            o,
            "VERDICT:     {}: {}",
            self.verdict.to_uppercase(),
            self.summary
        );
        for n in &self.notes {
            let _ = writeln!(o, "note:        {n}");
        }
        o
    }
}

fn policies(o: &mut String, list: &[PolicyEntry]) {
    if list.is_empty() {
        let _ = writeln!(o, "  policies:  none");
    }
    for p in list {
        let m = if p.matches {
            "matches"
        } else {
            "does not match"
        };
        let _ = writeln!(o, "  policy:    {} {} ({m})", p.action, p.name);
    }
}
