//! The agent's view of the cluster: pods on this node and namespaces, fed by a
//! [`super::source::PodSource`], with the lookups the reconciler needs.

use std::collections::{BTreeSet, HashMap};

use super::model::{Decision, NamespaceMeta, PodMeta, SourceEvent, decide};

/// Pods (by uid) and namespaces (by name) as last reported by the source.
#[derive(Debug, Default)]
pub struct Cluster {
    pods: HashMap<String, PodMeta>,
    by_name: HashMap<String, String>,
    namespaces: HashMap<String, NamespaceMeta>,
    synced: bool,
}

/// What an event changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Pods whose decision may have changed (uids).
    pub pods: BTreeSet<String>,
    /// Namespaces whose pods' decisions may have changed.
    pub namespaces: BTreeSet<String>,
    /// The source just finished its initial state.
    pub synced: bool,
}

impl Cluster {
    /// Applies one source event.
    pub fn apply(&mut self, event: SourceEvent) -> Changed {
        let mut changed = Changed::default();
        match event {
            SourceEvent::Pod(pod) => {
                let uid = pod.uid.clone();
                if let Some(old) = self.pods.get(&uid)
                    && old.key() != pod.key()
                {
                    self.by_name.remove(&old.key());
                }
                self.by_name.insert(pod.key(), uid.clone());
                self.pods.insert(uid.clone(), pod);
                changed.pods.insert(uid);
            }
            SourceEvent::PodDeleted(uid) => {
                if let Some(old) = self.pods.remove(&uid)
                    && self.by_name.get(&old.key()) == Some(&uid)
                {
                    self.by_name.remove(&old.key());
                }
                changed.pods.insert(uid);
            }
            SourceEvent::Namespace(ns) => {
                changed.namespaces.insert(ns.name.clone());
                self.namespaces.insert(ns.name.clone(), ns);
            }
            SourceEvent::NamespaceDeleted(name) => {
                self.namespaces.remove(&name);
                changed.namespaces.insert(name);
            }
            SourceEvent::Synced => {
                changed.synced = !self.synced;
                self.synced = true;
            }
        }
        changed
    }

    /// Whether the source delivered its complete initial state.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// A pod by uid.
    pub fn pod(&self, uid: &str) -> Option<&PodMeta> {
        self.pods.get(uid)
    }

    /// Every known pod.
    pub fn pods(&self) -> impl Iterator<Item = &PodMeta> {
        self.pods.values()
    }

    /// The uid of `namespace/name`.
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.by_name
            .get(&format!("{namespace}/{name}"))
            .map(String::as_str)
    }

    /// The decision for pod `uid`, `None` when the pod is unknown.
    pub fn decision(&self, uid: &str) -> Option<Decision> {
        let pod = self.pods.get(uid)?;
        Some(decide(pod, self.namespaces.get(&pod.namespace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::model::DATAPLANE_MODE_LABEL;

    #[test]
    fn namespace_label_changes_flip_the_decision_and_renames_keep_the_index() {
        let mut c = Cluster::default();
        let pod = PodMeta {
            uid: "u1".into(),
            name: "a".into(),
            namespace: "ns".into(),
            ..PodMeta::default()
        };
        assert_eq!(c.apply(SourceEvent::Pod(pod.clone())).pods.len(), 1);
        assert_eq!(c.uid_of("ns", "a"), Some("u1"));
        assert_eq!(c.decision("u1"), Some(Decision::NotSelected));
        let mut ns = NamespaceMeta {
            name: "ns".into(),
            ..NamespaceMeta::default()
        };
        ns.labels
            .insert(DATAPLANE_MODE_LABEL.into(), "ambient".into());
        let changed = c.apply(SourceEvent::Namespace(ns));
        assert!(changed.namespaces.contains("ns"));
        assert_eq!(c.decision("u1"), Some(Decision::EnrolledByNamespace));
        c.apply(SourceEvent::NamespaceDeleted("ns".into()));
        assert_eq!(c.decision("u1"), Some(Decision::NotSelected));
        c.apply(SourceEvent::PodDeleted("u1".into()));
        assert_eq!(c.uid_of("ns", "a"), None);
        assert_eq!(c.decision("u1"), None);
        assert!(c.apply(SourceEvent::Synced).synced);
        assert!(
            !c.apply(SourceEvent::Synced).synced,
            "only the first sync counts"
        );
    }
}
