//! Services: virtual IPs load-balanced over workloads.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::workload::{WaypointRef, validate_unicast};
use super::{FieldError, names, service_hostname};

/// A Kubernetes service as the proxies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// `<name>.<namespace>.svc.cluster.local`.
    pub hostname: String,
    /// Cluster IPs of the service.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    /// Ports the service exposes.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Uids of the workloads behind the service.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The waypoint traffic to this service goes through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointRef>,
}

/// One port of a service and the workload port it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port clients dial on the VIP.
    pub port: u16,
    /// Port of the endpoint workloads.
    pub target_port: u16,
    /// Application protocol (`http`, `http2`, `grpc`, `tcp`...), when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl Service {
    /// Checks every field except endpoints (the snapshot checks those against its workloads);
    /// errors are located relative to the service.
    pub fn validate(&self) -> Result<(), FieldError> {
        names::dns_label(&self.name).map_err(|m| FieldError::new("name", m))?;
        names::dns_label(&self.namespace).map_err(|m| FieldError::new("namespace", m))?;
        let expected = service_hostname(&self.name, &self.namespace);
        if self.hostname != expected {
            return Err(FieldError::new(
                "hostname",
                format!(
                    "{:?} does not match the service: expected {expected:?}",
                    self.hostname
                ),
            ));
        }
        for (i, ip) in self.vips.iter().enumerate() {
            validate_unicast(*ip).map_err(|m| FieldError::new(format!("vips[{i}]"), m))?;
            if self.vips[..i].contains(ip) {
                return Err(FieldError::new(
                    format!("vips[{i}]"),
                    format!("{ip} is listed twice"),
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let field = |f: &str| format!("ports[{i}].{f}");
            if p.port == 0 {
                return Err(FieldError::new(
                    field("port"),
                    "port 0 is not a valid service port",
                ));
            }
            if p.target_port == 0 {
                return Err(FieldError::new(
                    field("targetPort"),
                    "port 0 is not a valid target port",
                ));
            }
            if self.ports[..i].iter().any(|q| q.port == p.port) {
                return Err(FieldError::new(
                    field("port"),
                    format!("port {} is listed twice", p.port),
                ));
            }
        }
        if let Some(wp) = &self.waypoint {
            wp.validate().map_err(|e| e.under("waypoint"))?;
        }
        Ok(())
    }

    /// The port entry clients reach on `port`, if the service exposes it.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            name: "echo".into(),
            namespace: "default".into(),
            hostname: "echo.default.svc.cluster.local".into(),
            vips: vec!["10.96.0.10".parse().expect("ip")],
            ports: vec![ServicePort {
                port: 80,
                target_port: 8080,
                app_protocol: None,
            }],
            endpoints: vec![],
            waypoint: None,
        }
    }

    #[test]
    fn valid_service_and_port_lookup() {
        let s = service();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.port(80).map(|p| p.target_port), Some(8080));
        assert!(s.port(81).is_none());
    }

    #[test]
    fn invalid_fields_are_located() {
        type Case = (fn(&mut Service), &'static str);
        let cases: Vec<Case> = vec![
            (|s| s.name = "a.b".into(), "name"),
            (|s| s.hostname = "echo".into(), "hostname"),
            (|s| s.vips.push("224.0.0.1".parse().expect("ip")), "vips[1]"),
            (
                |s| s.vips.push("10.96.0.10".parse().expect("ip")),
                "vips[1]",
            ),
            (|s| s.ports[0].port = 0, "ports[0].port"),
            (|s| s.ports[0].target_port = 0, "ports[0].targetPort"),
            (
                |s| {
                    s.ports.push(ServicePort {
                        port: 80,
                        target_port: 1,
                        app_protocol: None,
                    })
                },
                "ports[1].port",
            ),
            (
                |s| {
                    s.waypoint = Some(WaypointRef {
                        address: "0.0.0.0".parse().expect("ip"),
                        port: 15008,
                    })
                },
                "waypoint.address",
            ),
        ];
        for (mutate, field) in cases {
            let mut s = service();
            mutate(&mut s);
            let err = s.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }
}
