//! The ztunnel config file of a test mesh: one workload per pod, plus the test's own YAML.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::Pod;

/// A pod of a test mesh.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Pod name (also the workload name).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account: the pod's identity.
    pub service_account: String,
    /// Labels (services select on them).
    pub labels: BTreeMap<String, String>,
    /// Whether the pod is in the mesh (rules + ztunnel) or a plain pod.
    pub enrolled: bool,
    /// Address of the waypoint serving this workload, if any.
    pub waypoint: Option<String>,
}

impl PodSpec {
    /// An enrolled pod `name` in namespace `default` with service account `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            namespace: "default".into(),
            service_account: name.into(),
            labels: BTreeMap::new(),
            enrolled: true,
            waypoint: None,
        }
    }

    /// Sets the service account.
    pub fn sa(mut self, sa: &str) -> Self {
        self.service_account = sa.into();
        self
    }

    /// Sets the namespace.
    pub fn ns(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// Binds the workload to the waypoint at `address`.
    pub fn waypoint(mut self, address: &str) -> Self {
        self.waypoint = Some(address.into());
        self
    }

    /// Makes it a pod outside the mesh (no capture; its workload is listed as protocol TCP).
    pub fn outside(mut self) -> Self {
        self.enrolled = false;
        self
    }

    /// The uid the node agent hands over.
    pub fn uid(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The ztunnel config file text: one workload per (spec, pod), then `extra` YAML.
pub fn render<'a>(pods: impl IntoIterator<Item = (&'a PodSpec, &'a Pod)>, extra: &str) -> String {
    let mut out = String::from("workloads:\n");
    for (spec, pod) in pods {
        let labels: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k:?}: {v:?}"))
            .collect();
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "  - {{uid: {uid:?}, name: {name:?}, namespace: {ns:?}, serviceAccount: {sa:?}, node: \"node-{node}\", \
             addresses: [\"{ip}\"], labels: {{{labels}}}, protocol: {proto}{waypoint}}}",
            uid = spec.uid(),
            name = spec.name,
            ns = spec.namespace,
            sa = spec.service_account,
            node = pod.node,
            ip = pod.ip,
            labels = labels.join(", "),
            proto = if spec.enrolled { "HBONE" } else { "TCP" },
            waypoint = spec
                .waypoint
                .as_ref()
                .map(|w| format!(", waypoint: {{address: {w:?}}}"))
                .unwrap_or_default(),
        );
    }
    out.push_str(extra);
    out.push('\n');
    out
}
