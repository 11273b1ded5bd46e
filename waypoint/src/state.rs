//! The waypoint's view of the mesh and its routes: the last good mesh config (workloads,
//! services) and the last good route set, each swapped atomically when its files change.

pub mod control;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use mesh_api::l7::{self, RouteTable};
use mesh_api::{ConfigSnapshot, Service};

pub use watch::{RouteFiles, reload_routes, watch_config, watch_routes};

/// Errors loading config or routes.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read.
    #[error("cannot read {0}: {1} (check the path and permissions)")]
    Read(PathBuf, std::io::Error),
    /// The mesh config file is invalid; nothing of it was applied.
    #[error("config file {0} rejected, previous config kept: {1}")]
    InvalidConfig(PathBuf, String),
    /// The route set is invalid; nothing of it was applied.
    #[error("routes in {dir} rejected, previous routes kept: {}", .errors.join("; "))]
    InvalidRoutes {
        /// The routes directory.
        dir: PathBuf,
        /// Every problem found, one per object or file.
        errors: Vec<String>,
    },
}

/// A mesh config with the index the waypoint needs (services by namespace/name).
#[derive(Debug, Default)]
pub struct Mesh {
    /// The validated config.
    pub snapshot: ConfigSnapshot,
    by_name: HashMap<(String, String), usize>,
}

impl Mesh {
    /// Indexes `snapshot`.
    pub fn new(snapshot: ConfigSnapshot) -> Self {
        let by_name = snapshot
            .parts()
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.namespace.clone(), s.name.clone()), i))
            .collect();
        Self { snapshot, by_name }
    }

    /// The service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|i| &self.snapshot.parts().services[*i])
    }
}

/// The routes in force and why the last update was refused, if it was.
#[derive(Debug, Default)]
pub struct Routes {
    /// The route table.
    pub table: RouteTable,
    /// AuthorizationPolicies from the routes directory.
    pub policies: Vec<mesh_api::authz::Policy>,
    /// `action: AUDIT` policies: matching requests are logged, never denied.
    pub audit_policies: Vec<mesh_api::authz::Policy>,
    /// DestinationRules by service (namespace, name).
    pub destination_rules: HashMap<(String, String), l7::istio::DestinationRule>,
    /// RequestAuthentications (JWT rules).
    pub authentications: Vec<l7::authn::RequestAuthentication>,
    /// Version of the route set (1 = first load, 0 = none loaded).
    pub version: u64,
}

/// Shared, lock-free readable state; readers load it once per request.
#[derive(Debug, Default)]
pub struct State {
    mesh: ArcSwap<Mesh>,
    routes: ArcSwap<Routes>,
    mesh_version: AtomicU64,
    /// Last rejection of the route set (for `/config_dump`), cleared by a good update.
    routes_rejected: ArcSwap<Option<Vec<String>>>,
    /// Last rejection of the mesh config.
    config_rejected: ArcSwap<Option<String>>,
}

impl State {
    /// A state with `mesh` as config version 1 and no routes.
    pub fn new(mesh: ConfigSnapshot) -> Self {
        let s = Self::default();
        s.replace_mesh(mesh);
        s
    }

    /// The mesh config in force.
    pub fn mesh(&self) -> Arc<Mesh> {
        self.mesh.load_full()
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Replaces the mesh config; returns its version.
    pub fn replace_mesh(&self, snapshot: ConfigSnapshot) -> u64 {
        self.mesh.store(Arc::new(Mesh::new(snapshot)));
        self.config_rejected.store(Arc::new(None));
        self.mesh_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Replaces the routes; returns their version.
    pub fn replace_routes(&self, loaded: Loaded) -> u64 {
        let version = self.routes.load().version + 1;
        let destination_rules = loaded
            .destination_rules
            .into_iter()
            .map(|d| (d.service.clone(), d))
            .collect();
        self.routes.store(Arc::new(Routes {
            table: loaded.table,
            policies: loaded.policies,
            audit_policies: loaded.audit_policies,
            destination_rules,
            authentications: loaded.authentications,
            version,
        }));
        self.routes_rejected.store(Arc::new(None));
        version
    }

    /// Records a refused route update (the routes in force stay).
    pub fn reject_routes(&self, errors: Vec<String>) {
        self.routes_rejected.store(Arc::new(Some(errors)));
    }

    /// Records a refused config update (the config in force stays).
    pub fn reject_config(&self, error: String) {
        self.config_rejected.store(Arc::new(Some(error)));
    }

    /// Version of the mesh config in force.
    pub fn mesh_version(&self) -> u64 {
        self.mesh_version.load(Ordering::Relaxed)
    }

    /// JSON for `/config_dump`.
    pub fn dump(&self) -> serde_json::Value {
        let routes = self.routes();
        serde_json::json!({
            "version": self.mesh_version(),
            "config": &self.mesh().snapshot,
            "configRejected": &**self.config_rejected.load(),
            "routes": {
                "version": routes.version,
                "routes": &routes.table,
                "authorizationPolicies": &routes.policies,
                "auditPolicies": &routes.audit_policies,
                "destinationRules": routes.destination_rules.values().collect::<Vec<_>>(),
                "requestAuthentications": &routes.authentications,
                "rejected": &**self.routes_rejected.load(),
            },
        })
    }
}

/// Reads and validates the mesh config file (all or nothing).
pub fn load_config(path: &Path) -> Result<ConfigSnapshot, StateError> {
    let text = std::fs::read_to_string(path).map_err(|e| StateError::Read(path.into(), e))?;
    mesh_api::file::parse(&text).map_err(|e| StateError::InvalidConfig(path.into(), e.to_string()))
}

/// A validated route set.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Routes (HTTPRoute, GRPCRoute, VirtualService).
    pub table: RouteTable,
    /// AuthorizationPolicies (ALLOW, DENY).
    pub policies: Vec<mesh_api::authz::Policy>,
    /// AUDIT policies.
    pub audit_policies: Vec<mesh_api::authz::Policy>,
    /// DestinationRules.
    pub destination_rules: Vec<l7::istio::DestinationRule>,
    /// RequestAuthentications.
    pub authentications: Vec<l7::authn::RequestAuthentication>,
}

impl Loaded {
    /// The waypoint's state from a validated set, for the waypoint of Gateway `gateway` (namespace,
    /// name). Objects the set left out without failing it (malformed ReferenceGrants: they grant
    /// nothing) are logged.
    pub(crate) fn from_config(c: l7::L7Config, gateway: (&str, &str)) -> Self {
        for e in &c.ignored {
            tracing::warn!(error = %e, "ignored; it grants nothing until fixed");
        }
        Self {
            table: RouteTable::new(c.routes, Some(gateway)),
            policies: c.policies,
            audit_policies: c.audit_policies,
            destination_rules: c.destination_rules,
            authentications: c.authentications,
        }
    }
}

/// Reads every route file of `dir` and validates the whole set (all or nothing): routes,
/// AuthorizationPolicies and DestinationRules.
pub fn load_routes(dir: &Path, gateway: (&str, &str)) -> Result<Loaded, StateError> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for path in watch::route_files(dir).map_err(|e| StateError::Read(dir.into(), e))? {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match l7::parse_documents(&path.display().to_string(), &text) {
            Ok(mut objs) => objects.append(&mut objs),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match l7::build(&objects) {
        Ok(c) if errors.is_empty() => Ok(Loaded::from_config(c, gateway)),
        Ok(_) => Err(StateError::InvalidRoutes {
            dir: dir.into(),
            errors,
        }),
        Err(invalid) => {
            errors.extend(invalid.iter().map(|e| e.to_string()));
            Err(StateError::InvalidRoutes {
                dir: dir.into(),
                errors,
            })
        }
    }
}
