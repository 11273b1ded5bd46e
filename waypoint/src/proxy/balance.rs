//! Endpoint choice and per-service/per-endpoint bookkeeping of DestinationRule policies: load
//! balancing (round robin, least request, random), connection-pool limits (overflow -> 503) and
//! outlier detection (endpoints answering errors in a row are ejected for a while).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mesh_api::l7::istio::{LoadBalancer, Outlier};

use crate::resolve::Picked;

#[derive(Debug, Default)]
struct Endpoint {
    in_flight: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    ejections: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

/// Shared balancing state. Entries are small and keyed by address / service.
#[derive(Debug, Default)]
pub struct Balancer {
    rr: Mutex<HashMap<String, usize>>,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    services: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// A request admitted under a connection-pool limit; released when dropped.
#[derive(Debug)]
pub struct Permit(Option<Arc<AtomicUsize>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An attempt in flight to one endpoint; released when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Balancer {
    fn endpoint(&self, addr: SocketAddr) -> Arc<Endpoint> {
        lock(&self.endpoints).entry(addr).or_default().clone()
    }

    /// Admits a request to service `key` if fewer than `limit` are in flight; `None` = overflow.
    pub fn admit(&self, key: &str, limit: Option<u32>) -> Option<Permit> {
        let Some(limit) = limit else {
            return Some(Permit(None));
        };
        let c = lock(&self.services)
            .entry(key.to_owned())
            .or_default()
            .clone();
        let before = c.fetch_add(1, Ordering::AcqRel);
        if before >= limit as usize {
            c.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(Some(c)))
    }

    /// Whether `addr` is ejected now.
    fn ejected(&self, addr: SocketAddr, now: Instant) -> bool {
        let ep = self.endpoint(addr);
        let until = *lock(&ep.ejected_until);
        until.is_some_and(|u| u > now)
    }

    /// Chooses an endpoint of `eps` (not empty) for service `key`; `avoid` is the index that
    /// just failed (retries prefer another). Ejected endpoints are skipped while others remain.
    pub fn pick(&self, key: &str, eps: &[Picked], lb: LoadBalancer, avoid: Option<usize>) -> usize {
        let now = Instant::now();
        let mut candidates: Vec<usize> = (0..eps.len())
            .filter(|i| !self.ejected(eps[*i].endpoint.addr, now))
            .collect();
        if candidates.is_empty() {
            candidates = (0..eps.len()).collect();
        }
        if let Some(a) = avoid
            && candidates.len() > 1
        {
            candidates.retain(|i| *i != a);
        }
        let n = candidates.len();
        let chosen = match lb {
            LoadBalancer::Random => rand::random_range(0..n),
            LoadBalancer::RoundRobin => {
                let mut rr = lock(&self.rr);
                let next = rr.entry(key.to_owned()).or_insert(0);
                *next = next.wrapping_add(1);
                *next % n
            }
            LoadBalancer::LeastRequest => {
                let (a, b) = (rand::random_range(0..n), rand::random_range(0..n));
                let load = |i: usize| {
                    self.endpoint(eps[candidates[i]].endpoint.addr)
                        .in_flight
                        .load(Ordering::Acquire)
                };
                if load(b) < load(a) { b } else { a }
            }
        };
        candidates[chosen]
    }

    /// Counts an attempt to `ep` as in flight until the guard drops.
    pub fn begin(&self, ep: &Picked) -> InFlight {
        let e = self.endpoint(ep.endpoint.addr);
        e.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(e)
    }

    /// Records how an attempt to `ep` ended (`None` = no response: connect failure or reset);
    /// with outlier detection, enough errors in a row eject the endpoint, unless more than
    /// `max_ejection_percent` of the `total` endpoints would then be out.
    pub fn report(
        &self,
        ep: &Picked,
        status: Option<u16>,
        outlier: Option<&Outlier>,
        all: &[Picked],
    ) {
        let Some(o) = outlier else { return };
        let e = self.endpoint(ep.endpoint.addr);
        let is_5xx = status.is_none_or(|s| s >= 500);
        let is_gw = status.is_none_or(|s| matches!(s, 502..=504));
        let c5 = if is_5xx {
            e.consecutive_5xx.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            e.consecutive_5xx.store(0, Ordering::Release);
            0
        };
        let cg = if is_gw {
            e.consecutive_gateway.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            e.consecutive_gateway.store(0, Ordering::Release);
            0
        };
        let trip = o.consecutive_5xx.is_some_and(|n| c5 >= n)
            || o.consecutive_gateway.is_some_and(|n| cg >= n);
        if !trip {
            return;
        }
        let now = Instant::now();
        let out = all
            .iter()
            .filter(|p| self.ejected(p.endpoint.addr, now))
            .count();
        if ((out + 1) * 100) > all.len() * o.max_ejection_percent as usize {
            return;
        }
        let times = e.ejections.fetch_add(1, Ordering::AcqRel) + 1;
        *lock(&e.ejected_until) = Some(now + o.base_ejection * times);
        e.consecutive_5xx.store(0, Ordering::Release);
        e.consecutive_gateway.store(0, Ordering::Release);
        tracing::info!(endpoint = %ep.endpoint.addr, ejections = times, "outlier ejected");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::Endpoint as Ep;

    fn eps(n: u8) -> Vec<Picked> {
        (0..n)
            .map(|i| Picked {
                endpoint: Ep {
                    addr: SocketAddr::from(([10, 0, 0, i], 80)),
                    identity: None,
                },
                workload: format!("w{i}"),
                namespace: "ns".into(),
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles_and_retries_avoid_the_failed_endpoint() {
        let b = Balancer::default();
        let e = eps(3);
        let picks: Vec<usize> = (0..6)
            .map(|_| b.pick("s", &e, LoadBalancer::RoundRobin, None))
            .collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
        for _ in 0..20 {
            assert_ne!(b.pick("s", &e, LoadBalancer::Random, Some(1)), 1);
        }
    }

    #[test]
    fn least_request_prefers_idle_endpoints() {
        let b = Balancer::default();
        let e = eps(2);
        let _busy: Vec<InFlight> = (0..5).map(|_| b.begin(&e[0])).collect();
        let ones = (0..200)
            .filter(|_| b.pick("s", &e, LoadBalancer::LeastRequest, None) == 1)
            .count();
        assert!(ones > 120, "{ones} of 200 to the idle endpoint");
    }

    #[test]
    fn overflow_beyond_the_limit_and_release_on_drop() {
        let b = Balancer::default();
        let p1 = b.admit("s", Some(2)).unwrap();
        let _p2 = b.admit("s", Some(2)).unwrap();
        assert!(b.admit("s", Some(2)).is_none());
        drop(p1);
        assert!(b.admit("s", Some(2)).is_some());
        assert!(b.admit("other", None).is_some());
    }

    #[test]
    fn consecutive_errors_eject_within_the_allowed_share() {
        let b = Balancer::default();
        let e = eps(2);
        let o = Outlier {
            consecutive_5xx: Some(2),
            consecutive_gateway: None,
            base_ejection: Duration::from_secs(60),
            max_ejection_percent: 50,
        };
        b.report(&e[0], Some(500), Some(&o), &e);
        assert!(!b.ejected(e[0].endpoint.addr, Instant::now()));
        b.report(&e[0], None, Some(&o), &e);
        assert!(b.ejected(e[0].endpoint.addr, Instant::now()));
        for _ in 0..20 {
            assert_eq!(b.pick("s", &e, LoadBalancer::Random, None), 1);
        }
        // The second may not be ejected too (50% at most).
        b.report(&e[1], Some(503), Some(&o), &e);
        b.report(&e[1], Some(503), Some(&o), &e);
        assert!(!b.ejected(e[1].endpoint.addr, Instant::now()));
        // A success resets the count.
        b.report(&e[1], Some(200), Some(&o), &e);
        assert_eq!(
            b.endpoint(e[1].endpoint.addr)
                .consecutive_5xx
                .load(Ordering::Acquire),
            0
        );
    }
}
