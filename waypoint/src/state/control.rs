//! The waypoint's end of control's config stream: each complete config (workloads, services,
//! policies, and the L7 objects of this waypoint as Kubernetes JSON) is validated as a whole and
//! put in force, or rejected (NACK with every reason) with the previous config kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mesh_api::ConfigSnapshot;
use mesh_api::l7;
use mesh_xds::client::{ConfigSink, Received};

use super::{Loaded, State};

/// Applies control's configs to the waypoint's [`State`].
pub struct ControlSink {
    state: Arc<State>,
    gateway: (String, String),
    /// The L7 objects in force, by resource name (what the next response applies to).
    l7: Mutex<BTreeMap<String, String>>,
    first: tokio::sync::watch::Sender<bool>,
}

impl ControlSink {
    /// A sink for the waypoint of Gateway `gateway` (namespace, name); `first` turns true once
    /// a config is in force.
    pub fn new(
        state: Arc<State>,
        gateway: (String, String),
        first: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        Self {
            state,
            gateway,
            l7: Mutex::default(),
            first,
        }
    }
}

/// Validates L7 objects given as JSON into a route set: all of them, or every reason.
pub fn loaded_from_json(
    objects: &BTreeMap<String, String>,
    gateway: (&str, &str),
) -> Result<Loaded, Vec<String>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (name, json) in objects {
        let obj = serde_json::from_str(json)
            .map_err(|e| e.to_string())
            .and_then(l7::object_from_json);
        match obj {
            Ok(o) => parsed.push(o),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    match l7::build(&parsed) {
        Ok(c) if errors.is_empty() => Ok(Loaded::from_config(c, gateway)),
        Ok(_) => Err(errors),
        Err(invalid) => {
            errors.extend(invalid.iter().map(ToString::to_string));
            Err(errors)
        }
    }
}

impl ConfigSink for ControlSink {
    fn current(&self) -> Received {
        Received {
            parts: self.state.mesh().snapshot.parts().clone(),
            l7_objects: self.l7.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn apply(&self, config: Received) -> Result<(), String> {
        let snapshot = ConfigSnapshot::new(config.parts).map_err(|e| e.to_string())?;
        let gw = (self.gateway.0.as_str(), self.gateway.1.as_str());
        let loaded = loaded_from_json(&config.l7_objects, gw).map_err(|errors| {
            self.state.reject_routes(errors.clone());
            errors.join("; ")
        })?;
        let mesh_version = self.state.replace_mesh(snapshot);
        let routes_version = self.state.replace_routes(loaded);
        *self.l7.lock().unwrap_or_else(|e| e.into_inner()) = config.l7_objects;
        tracing::info!(mesh_version, routes_version, "config from control applied");
        self.first.send_replace(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, path: &str) -> String {
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
                     "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": path}}]}]}
        })
        .to_string()
    }

    #[test]
    fn configs_apply_whole_or_are_rejected_with_reasons() {
        let state = Arc::new(State::new(ConfigSnapshot::default()));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let sink = ControlSink::new(state.clone(), ("default".into(), "waypoint".into()), tx);
        let mut good = Received::default();
        good.l7_objects
            .insert("l7/HTTPRoute/default/a".into(), route("a", "/a.*"));
        sink.apply(good.clone()).unwrap();
        assert!(*rx.borrow());
        assert_eq!(state.routes().version, 1);
        assert_eq!(state.routes().table.routes().len(), 1);
        assert_eq!(sink.current().l7_objects, good.l7_objects);

        let mut bad = good.clone();
        bad.l7_objects
            .insert("l7/HTTPRoute/default/b".into(), route("b", "/b("));
        bad.l7_objects
            .insert("l7/HTTPRoute/default/c".into(), "not json".into());
        let err = sink.apply(bad).unwrap_err();
        assert!(err.contains("invalid regular expression"), "{err}");
        assert!(err.contains("l7/HTTPRoute/default/c"), "{err}");
        assert_eq!(state.routes().version, 1, "the previous routes stay");
        assert_eq!(sink.current().l7_objects, good.l7_objects);
        assert!(state.dump()["routes"]["rejected"].is_array());
    }
}
