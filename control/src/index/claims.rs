//! Address ownership across workloads and services. A snapshot may hold each address once (a pod IP, a VIP), but
//! Kubernetes objects can briefly disagree (a pod still holding an address another pod was given, a VIP equal to a
//! pod IP in hand-written files). The first object to claim an address keeps it; later claimants wait and are
//! recomputed when it is released.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::objects::ObjectKey;

/// Who owns which address.
#[derive(Debug, Default)]
pub struct Claims {
    owner: HashMap<IpAddr, ObjectKey>,
    held: HashMap<ObjectKey, Vec<IpAddr>>,
    waiting: HashMap<IpAddr, BTreeSet<ObjectKey>>,
}

/// Result of a claim.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Addresses the claimant owns now, in the order asked.
    pub granted: Vec<IpAddr>,
    /// Addresses owned by another object (with it).
    pub denied: Vec<(IpAddr, ObjectKey)>,
    /// Objects that waited for addresses this claim released: recompute them.
    pub wake: BTreeSet<ObjectKey>,
}

impl Claims {
    /// `who` now wants exactly `want`: keeps or takes the free ones, releases the ones it no longer wants.
    pub fn claim(&mut self, who: &ObjectKey, want: &[IpAddr]) -> Claimed {
        let mut out = Claimed::default();
        for ip in self.held.remove(who).unwrap_or_default() {
            if !want.contains(&ip) {
                out.wake.extend(self.release(ip));
            }
        }
        for ip in want {
            match self.owner.get(ip) {
                Some(other) if other != who => {
                    out.denied.push((*ip, other.clone()));
                    self.waiting.entry(*ip).or_default().insert(who.clone());
                }
                _ => {
                    self.owner.insert(*ip, who.clone());
                    out.granted.push(*ip);
                }
            }
        }
        if !out.granted.is_empty() {
            self.held.insert(who.clone(), out.granted.clone());
        }
        out.wake.remove(who);
        out
    }

    /// `who` is gone: releases everything it held; returns the objects to recompute.
    pub fn release_all(&mut self, who: &ObjectKey) -> BTreeSet<ObjectKey> {
        let mut wake = BTreeSet::new();
        for ip in self.held.remove(who).unwrap_or_default() {
            wake.extend(self.release(ip));
        }
        wake.remove(who);
        wake
    }

    fn release(&mut self, ip: IpAddr) -> BTreeSet<ObjectKey> {
        self.owner.remove(&ip);
        self.waiting.remove(&ip).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Pod, "ns", name)
    }

    #[test]
    fn first_claim_wins_and_waiters_wake_on_release() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let mut c = Claims::default();
        assert_eq!(c.claim(&key("a"), &[ip]).granted, vec![ip]);
        let b = c.claim(&key("b"), &[ip, other]);
        assert_eq!(b.granted, vec![other]);
        assert_eq!(b.denied, vec![(ip, key("a"))]);
        // a moves to another address: b is woken and then gets it.
        let a = c.claim(&key("a"), &["10.0.0.3".parse().expect("ip")]);
        assert_eq!(a.wake.into_iter().collect::<Vec<_>>(), vec![key("b")]);
        assert_eq!(c.claim(&key("b"), &[ip, other]).granted, vec![ip, other]);
        assert!(c.release_all(&key("b")).is_empty());
        assert_eq!(c.claim(&key("c"), &[ip]).granted, vec![ip]);
    }
}
