//! Fault injection: our `HTTPFault` kind (group [`FAULT_GROUP`]), referenced from an HTTPRoute
//! `ExtensionRef` filter, and the same model for Istio VirtualService `fault`.
//!
//! ```yaml
//! apiVersion: waypoint.mesh.io/v1alpha1
//! kind: HTTPFault
//! metadata: {name: slow-jason, namespace: bookinfo}
//! spec:
//!   delay: {fixedDelay: 7s, percentage: 100}
//!   abort: {httpStatus: 500, percentage: 80}
//!   headers: [{name: end-user, value: jason}]
//! ```

use std::time::Duration;

use serde::Serialize;

use super::duration::parse_duration;
use super::matching::RequestView;
use super::pattern::ValueMatch;
use super::route::NamedMatch;
use super::spec::HttpFaultSpec;
use crate::model::FieldError;

/// API group of [`HttpFaultSpec`] objects.
pub const FAULT_GROUP: &str = "waypoint.mesh.io";
/// Kind of [`HttpFaultSpec`] objects.
pub const FAULT_KIND: &str = "HTTPFault";
/// One million: shares are kept in millionths so that `0.1%` stays exact.
pub const PER_MILLION: u32 = 1_000_000;

/// A validated fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Delay and its share in millionths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<(Duration, u32)>,
    /// Abort and its share in millionths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
    /// Only requests matching all of these are affected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NamedMatch>,
}

/// An abort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Abort {
    /// HTTP status answered.
    pub http_status: u16,
    /// gRPC status answered to gRPC calls (HTTP 200 + `grpc-status`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Share in millionths.
    pub per_million: u32,
}

/// What a fault does to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultAction {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer with this instead of forwarding.
    pub abort: Option<Abort>,
}

/// A percentage (0..=100, fractions allowed) as millionths.
pub fn percent_to_per_million(p: f64, field: &str) -> Result<u32, FieldError> {
    if !(0.0..=100.0).contains(&p) {
        return Err(FieldError::new(
            field,
            format!("{p} is not a percentage between 0 and 100"),
        ));
    }
    // In range 0..=1e6 after the check above: the cast cannot truncate.
    Ok((p * 10_000.0).round() as u32)
}

impl Fault {
    /// Validates an `HTTPFault` spec.
    pub fn from_spec(spec: &HttpFaultSpec) -> Result<Self, FieldError> {
        if spec.delay.is_none() && spec.abort.is_none() {
            return Err(FieldError::new(
                "spec",
                "a fault needs a delay, an abort or both",
            ));
        }
        let delay = match &spec.delay {
            Some(d) => {
                let t = parse_duration(&d.fixed_delay)
                    .map_err(|m| FieldError::new("spec.delay.fixedDelay", m))?;
                let share =
                    percent_to_per_million(d.percentage.unwrap_or(100.0), "spec.delay.percentage")?;
                Some((t, share))
            }
            None => None,
        };
        let abort = match &spec.abort {
            Some(a) => {
                let status = a.http_status.unwrap_or(500);
                if !(200..=599).contains(&status) {
                    return Err(FieldError::new(
                        "spec.abort.httpStatus",
                        format!("{status} is not an HTTP status between 200 and 599"),
                    ));
                }
                if a.grpc_status.is_some_and(|g| g > 16) {
                    return Err(FieldError::new(
                        "spec.abort.grpcStatus",
                        "gRPC status codes are 0..=16",
                    ));
                }
                Some(Abort {
                    http_status: status,
                    grpc_status: a.grpc_status,
                    per_million: percent_to_per_million(
                        a.percentage.unwrap_or(100.0),
                        "spec.abort.percentage",
                    )?,
                })
            }
            None => None,
        };
        let mut headers = Vec::new();
        for (i, h) in spec.headers.iter().enumerate() {
            let field = format!("spec.headers[{i}]");
            super::convert::check_header_name(&h.name).map_err(|m| FieldError::new(&field, m))?;
            let value = ValueMatch::parse(h.kind.as_deref(), &h.value)
                .map_err(|m| FieldError::new(&field, m))?;
            headers.push(NamedMatch {
                name: h.name.to_ascii_lowercase(),
                value,
            });
        }
        Ok(Self {
            delay,
            abort,
            headers,
        })
    }

    /// Decides for one request; `roll()` returns a uniform number in `0..PER_MILLION` (called
    /// once for the delay and once for the abort).
    pub fn decide(&self, req: &dyn RequestView, roll: &mut dyn FnMut() -> u32) -> FaultAction {
        let applies = self
            .headers
            .iter()
            .all(|h| req.header(&h.name).is_some_and(|v| h.value.is_match(&v)));
        if !applies {
            return FaultAction::default();
        }
        FaultAction {
            delay: self
                .delay
                .filter(|(_, share)| roll() < *share)
                .map(|(d, _)| d),
            abort: self.abort.clone().filter(|a| roll() < a.per_million),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::matching::SimpleRequest;
    use crate::l7::spec::{FaultAbortSpec, FaultDelaySpec, NameValueMatchSpec};

    fn spec() -> HttpFaultSpec {
        HttpFaultSpec {
            delay: Some(FaultDelaySpec {
                fixed_delay: "7s".into(),
                percentage: Some(100.0),
            }),
            abort: Some(FaultAbortSpec {
                http_status: Some(503),
                grpc_status: None,
                percentage: Some(80.0),
            }),
            headers: vec![NameValueMatchSpec {
                kind: None,
                name: "End-User".into(),
                value: "jason".into(),
            }],
        }
    }

    #[test]
    fn faults_apply_by_share_and_only_to_matching_requests() {
        let f = Fault::from_spec(&spec()).unwrap();
        let jason = SimpleRequest::new("GET", "/").header("end-user", "jason");
        // A roll below 80% aborts; the delay share is 100%.
        let a = f.decide(&jason, &mut || 799_999);
        assert_eq!(a.delay, Some(Duration::from_secs(7)));
        assert_eq!(a.abort.map(|a| a.http_status), Some(503));
        let b = f.decide(&jason, &mut || 800_000);
        assert!(b.abort.is_none());
        let other = SimpleRequest::new("GET", "/").header("end-user", "bob");
        assert_eq!(f.decide(&other, &mut || 0), FaultAction::default());
    }

    #[test]
    fn invalid_faults_are_rejected() {
        let mut s = spec();
        s.abort.as_mut().unwrap().percentage = Some(101.0);
        let e = Fault::from_spec(&s).unwrap_err();
        assert_eq!(e.field, "spec.abort.percentage");
        let mut s = spec();
        s.delay.as_mut().unwrap().fixed_delay = "7".into();
        assert_eq!(
            Fault::from_spec(&s).unwrap_err().field,
            "spec.delay.fixedDelay"
        );
        let e = Fault::from_spec(&HttpFaultSpec::default()).unwrap_err();
        assert!(e.message.contains("delay, an abort"), "{e}");
        assert_eq!(percent_to_per_million(0.1, "p"), Ok(1000));
    }
}
