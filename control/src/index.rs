//! The in-memory index: every object control has read, and the proxy resources translated from them, kept up to
//! date incrementally. A batch of changes recomputes only the resources the changed objects feed (a pod: its
//! workload and the services selecting it; a namespace: its pods and services; a Gateway or waypoint pod: all
//! waypoint users), and records each resource whose value changed in a change log with a new version, which the
//! config stream reads to send proxies only what changed.

mod claims;
mod deps;
pub mod grants;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use mesh_api::peer_auth::PeerAuthentication;
use mesh_api::{Policy, Service, SnapshotParts, Workload};

use crate::objects::{Kind, Object, ObjectKey};
use crate::translate::{Options, Warning, Waypoints};
use claims::Claims;

/// How many changes the log keeps; a proxy further behind gets a full comparison instead.
pub const CHANGE_LOG_CAPACITY: usize = 200_000;

/// A change to the objects.
#[derive(Debug, Clone)]
pub enum Change {
    /// The object was created or updated.
    Upsert(Object),
    /// The object was created or updated; the source keeps the same object (the index shares it instead of
    /// holding a copy of its own).
    Shared(Arc<Object>),
    /// The object was deleted.
    Delete(ObjectKey),
}

/// A translated proxy resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant holds the mesh-api type of the same name
pub enum Resource {
    Workload(Workload),
    Service(Service),
    AuthorizationPolicy(Policy),
    PeerAuthentication(PeerAuthentication),
    /// A waypoint (L7) object as Kubernetes JSON (HTTPRoute, GRPCRoute, HTTPFault, ReferenceGrant,
    /// RequestAuthentication, VirtualService, DestinationRule), validated by the waypoint; named `l7/<kind>/<ns>/<name>`.
    L7Object(String),
}

/// A resource and the version it last changed at.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index sequence number of its last change.
    pub version: u64,
    /// Hash of the content: the version proxies see, stable across control restarts so a proxy reconnecting to
    /// a restarted control is not sent what it already has.
    pub hash: u64,
    /// The resource.
    pub resource: Arc<Resource>,
    /// Its name, shared with every stream's record of what it sent (one allocation per resource, not per
    /// resource and stream).
    pub name: Arc<str>,
}

/// Objects and their translation.
#[derive(Debug)]
pub struct Index {
    opts: Options,
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    produced: HashMap<ObjectKey, String>,
    resources: BTreeMap<String, Entry>,
    by_node: HashMap<String, BTreeSet<String>>,
    claims: Claims,
    waypoints: Waypoints,
    warnings: BTreeMap<ObjectKey, Vec<Warning>>,
    seq: u64,
    log: VecDeque<(u64, String)>,
}

/// Objects to recompute.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub objects: BTreeSet<ObjectKey>,
    pub namespaces: BTreeSet<String>,
    pub waypoints: bool,
}

impl Index {
    /// An empty index translating with `opts`.
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            objects: BTreeMap::new(),
            produced: HashMap::new(),
            resources: BTreeMap::new(),
            by_node: HashMap::new(),
            claims: Claims::default(),
            waypoints: Waypoints::default(),
            warnings: BTreeMap::new(),
            seq: 0,
            log: VecDeque::new(),
        }
    }

    /// Applies a batch of changes; returns the names of the resources that changed (added, updated, removed).
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> Vec<String> {
        let mut dirty = Dirty::default();
        for change in changes {
            let (key, new) = match change {
                Change::Upsert(o) => (o.key(), Some(Arc::new(o))),
                Change::Shared(o) => (o.key(), Some(o)),
                Change::Delete(k) => (k, None),
            };
            let old = match &new {
                Some(o) => self.objects.insert(key.clone(), o.clone()),
                None => self.objects.remove(&key),
            };
            deps::note(self, &key, old.as_deref(), new.as_deref(), &mut dirty);
        }
        let start = self.seq;
        self.recompute(dirty);
        self.log
            .iter()
            .rev()
            .take_while(|(s, _)| *s > start)
            .map(|(_, n)| n.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Replaces every object with `objects` (a full resync of a source): changes only what differs.
    pub fn replace_all(&mut self, objects: Vec<Object>) -> Vec<String> {
        self.replace_all_shared(objects.into_iter().map(Arc::new).collect())
    }

    /// [`Self::replace_all`] with objects the source keeps too (shared, not copied).
    pub fn replace_all_shared(&mut self, objects: Vec<Arc<Object>>) -> Vec<String> {
        let mut keep = BTreeSet::new();
        let mut changes = Vec::new();
        for o in objects {
            let key = o.key();
            if self
                .objects
                .get(&key)
                .is_none_or(|old| !Arc::ptr_eq(old, &o) && **old != *o)
            {
                changes.push(Change::Shared(o));
            }
            keep.insert(key);
        }
        let gone = self.objects.keys().filter(|k| !keep.contains(*k)).cloned();
        changes.extend(gone.map(Change::Delete).collect::<Vec<_>>());
        self.apply(changes)
    }

    /// Replaces the objects of `kind` with `objects` (a re-list of one kind).
    pub fn replace_kind(&mut self, kind: Kind, objects: Vec<Object>) -> Vec<String> {
        let mut keep = BTreeSet::new();
        let mut changes = Vec::new();
        for o in objects.into_iter().filter(|o| o.kind() == kind) {
            let key = o.key();
            if self.objects.get(&key).is_none_or(|old| **old != o) {
                changes.push(Change::Upsert(o));
            }
            keep.insert(key);
        }
        let gone: Vec<ObjectKey> = self
            .objects_of(kind)
            .map(Object::key)
            .filter(|k| !keep.contains(k))
            .collect();
        changes.extend(gone.into_iter().map(Change::Delete));
        self.apply(changes)
    }

    /// The translation options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Sequence number of the last change (the state's version).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&Entry> {
        self.resources.get(name)
    }

    /// Every resource, by name.
    pub fn resources(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.resources.iter()
    }

    /// The resources whose name starts with `prefix`, in name order.
    pub fn resources_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.resources
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(n, _)| n.starts_with(prefix))
    }

    /// Names of resources changed after `seq`, or `None` when the log no longer reaches back that far.
    pub fn changes_since(&self, seq: u64) -> Option<BTreeSet<String>> {
        if seq >= self.seq {
            return Some(BTreeSet::new());
        }
        match self.log.front() {
            Some((first, _)) if *first <= seq + 1 => {}
            _ => return None,
        }
        Some(
            self.log
                .iter()
                .rev()
                .take_while(|(s, _)| *s > seq)
                .map(|(_, n)| n.clone())
                .collect(),
        )
    }

    /// The workload resources (names) of pods on `node`.
    pub fn workloads_on_node(&self, node: &str) -> impl Iterator<Item = &Workload> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|n| match self.resources.get(n).map(|e| &*e.resource) {
                Some(Resource::Workload(w)) => Some(w),
                _ => None,
            })
    }

    /// The object `key`.
    pub fn object(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key).map(|o| &**o)
    }

    /// Objects of `kind` in `namespace`, in name order.
    pub fn objects_in<'a>(
        &'a self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Object> + use<'a> {
        let ns = namespace.to_string();
        self.objects
            .range(ObjectKey::new(kind, namespace, "")..)
            .take_while(move |(k, _)| k.kind == kind && k.namespace == ns)
            .map(|(_, o)| &**o)
    }

    /// Every object of `kind`.
    pub fn objects_of(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.objects
            .range(ObjectKey::new(kind, "", "")..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, o)| &**o)
    }

    /// Current warnings, by object.
    pub fn warnings(&self) -> impl Iterator<Item = &Warning> {
        self.warnings.values().flatten()
    }

    /// The waypoints known now.
    pub fn waypoints(&self) -> &Waypoints {
        &self.waypoints
    }

    /// Everything, unfiltered, as snapshot parts (config dumps, tests, the local config file).
    pub fn snapshot_parts(&self) -> SnapshotParts {
        let mut parts = SnapshotParts {
            root_namespace: self.opts.root_namespace.clone(),
            ..Default::default()
        };
        for e in self.resources.values() {
            match &*e.resource {
                Resource::Workload(w) => parts.workloads.push(w.clone()),
                Resource::Service(s) => parts.services.push(s.clone()),
                Resource::AuthorizationPolicy(p) => parts.authorization_policies.push(p.clone()),
                Resource::PeerAuthentication(p) => parts.peer_authentications.push(p.clone()),
                Resource::L7Object(_) => {}
            }
        }
        parts
    }

    fn recompute(&mut self, mut dirty: Dirty) {
        // Waiters woken by released addresses can cascade; each pass settles at least one claim.
        for _ in 0..8 {
            if dirty.waypoints {
                self.rebuild_waypoints(&mut dirty);
            }
            for ns in std::mem::take(&mut dirty.namespaces) {
                for kind in [Kind::Pod, Kind::Service] {
                    let keys: Vec<ObjectKey> =
                        self.objects_in(kind, &ns).map(Object::key).collect();
                    dirty.objects.extend(keys);
                }
            }
            let todo = std::mem::take(&mut dirty.objects);
            if todo.is_empty() {
                return;
            }
            // BTreeSet order is kind order: pods (workloads) before the services that need them.
            let mut wake = BTreeSet::new();
            for key in todo {
                let (resource, warnings) = deps::translate(self, &key);
                self.set_warnings(&key, warnings);
                wake.extend(self.set_resource(&key, resource));
            }
            dirty.objects = wake;
        }
        tracing::warn!(
            left = dirty.objects.len(),
            "address claims did not settle; left for the next change"
        );
    }

    fn rebuild_waypoints(&mut self, dirty: &mut Dirty) {
        dirty.waypoints = false;
        let gateways = self.objects_of(Kind::Gateway).filter_map(|o| match o {
            Object::Gateway(g) => Some(&**g),
            _ => None,
        });
        let new = Waypoints::build(gateways, |ns, gw| deps::waypoint_pods(self, ns, gw));
        if new != self.waypoints {
            self.waypoints = new;
            let keys: Vec<ObjectKey> = [Kind::Pod, Kind::Service]
                .into_iter()
                .flat_map(|k| self.objects_of(k).map(Object::key).collect::<Vec<_>>())
                .collect();
            dirty.objects.extend(keys);
        }
    }

    fn set_warnings(&mut self, key: &ObjectKey, warnings: Vec<Warning>) {
        if warnings.is_empty() {
            self.warnings.remove(key);
            return;
        }
        if self.warnings.get(key) != Some(&warnings) {
            for w in &warnings {
                tracing::warn!(object = %w.object, "{}", w.message);
            }
            self.warnings.insert(key.clone(), warnings);
        }
    }

    /// Stores what `key` translates to now; returns objects to recompute (woken address claimants).
    fn set_resource(
        &mut self,
        key: &ObjectKey,
        new: Option<(String, Resource)>,
    ) -> BTreeSet<ObjectKey> {
        let mut wake = BTreeSet::new();
        let new = match new {
            Some((name, r)) => {
                let (r, woken) = deps::claim_addresses(self, key, r);
                wake = woken;
                Some((name, r))
            }
            None => {
                wake.extend(self.claims.release_all(key));
                None
            }
        };
        let old_name = self.produced.get(key).cloned();
        if let Some(old) = old_name.filter(|o| new.as_ref().is_none_or(|(n, _)| n != o)) {
            self.produced.remove(key);
            self.remove_resource(&old);
        }
        let Some((name, resource)) = new else {
            return wake;
        };
        self.produced.insert(key.clone(), name.clone());
        if self
            .resources
            .get(&name)
            .is_some_and(|e| *e.resource == resource)
        {
            return wake;
        }
        if let Some(Resource::Workload(old)) = self.resources.get(&name).map(|e| &*e.resource) {
            let node = old.node.clone();
            self.unindex_node(&node, &name);
        }
        if let Resource::Workload(w) = &resource {
            self.by_node
                .entry(w.node.clone())
                .or_default()
                .insert(name.clone());
        }
        let version = self.bump(&name);
        let hash = content_hash(&resource);
        let shared = Arc::from(name.as_str());
        self.resources.insert(
            name,
            Entry {
                version,
                hash,
                resource: Arc::new(resource),
                name: shared,
            },
        );
        wake
    }

    fn remove_resource(&mut self, name: &str) {
        if let Some(e) = self.resources.remove(name) {
            if let Resource::Workload(w) = &*e.resource {
                self.unindex_node(&w.node, name);
            }
            self.bump(name);
        }
    }

    fn unindex_node(&mut self, node: &str, name: &str) {
        if let Some(set) = self.by_node.get_mut(node) {
            set.remove(name);
            if set.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    fn bump(&mut self, name: &str) -> u64 {
        self.seq += 1;
        self.log.push_back((self.seq, name.to_string()));
        while self.log.len() > CHANGE_LOG_CAPACITY {
            self.log.pop_front();
        }
        self.seq
    }
}

/// A hash of the resource's content, equal across processes of the same build (SipHash with fixed keys over
/// the Debug form, whose maps are ordered).
fn content_hash(r: &Resource) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{r:?}").hash(&mut h);
    h.finish()
}

/// Resource name of a workload.
pub fn workload_name(uid: &str) -> String {
    format!("workload/{uid}")
}

/// Resource name of a service, authorization policy or peer authentication.
pub fn resource_name(kind: Kind, namespace: &str, name: &str) -> String {
    let prefix = match kind {
        Kind::Service => "service",
        Kind::AuthorizationPolicy => "authz",
        Kind::PeerAuthentication => "peerauth",
        Kind::HttpRoute
        | Kind::GrpcRoute
        | Kind::HttpFault
        | Kind::ReferenceGrant
        | Kind::RequestAuthentication
        | Kind::VirtualService
        | Kind::DestinationRule => {
            return format!("l7/{}/{namespace}/{name}", kind.to_string().to_lowercase());
        }
        other => return format!("{other}/{namespace}/{name}").to_lowercase(),
    };
    format!("{prefix}/{namespace}/{name}")
}

#[cfg(test)]
mod tests;
