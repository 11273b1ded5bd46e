//! Which route rule a request takes: routes attached to the destination Service (GAMMA,
//! producer and consumer routes) or to the waypoint Gateway, ordered by Gateway API precedence.
//!
//! Precedence between matches of all applicable routes (first wins):
//! 1. path `Exact`, then `PathPrefix` (longest prefix first), then `RegularExpression` (longest
//!    pattern first; the spec leaves regexes to implementations);
//! 2. a method match; 3. more header matches; 4. more query parameter matches;
//! 5. the older route (creation time; routes without one come last); 6. namespace/name
//!    alphabetical; 7. rule order, then match order, within the route.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::matching::RequestView;
use super::route::{Backend, Parent, PathMatch, Route, RouteMatch, Rule};

/// The destination a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    /// Service namespace.
    pub namespace: &'a str,
    /// Service name.
    pub name: &'a str,
    /// Service port the client dialed.
    pub port: u16,
    /// Service FQDN (`name.ns.svc.cluster.local`), for Gateway-parent hostname matching.
    pub hostname: &'a str,
}

/// Result of route selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// No route applies to this destination (and client): plain service load balancing.
    NoRoute,
    /// Routes apply but none matched: answer 404.
    NotFound,
    /// The winning match.
    Matched {
        /// The route.
        route: &'a Route,
        /// Index of the rule within the route.
        rule_index: usize,
        /// The rule.
        rule: &'a Rule,
        /// The match that selected the rule.
        matched: &'a RouteMatch,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    route: usize,
    rule: usize,
    m: usize,
    /// Port restriction of the parent ref that attached the route.
    port: Option<u16>,
}

/// Entries of one parent, sorted by precedence.
#[derive(Debug, Clone, Default)]
struct Attached {
    entries: Vec<Entry>,
    /// Namespaces of consumer routes (route namespace != service namespace).
    consumer_namespaces: HashSet<String>,
}

/// Routes indexed by what they attach to. Immutable; rebuild on change.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    by_service: HashMap<(String, String), Attached>,
    gateway: Attached,
    /// VirtualService rules by service, in order (first match wins; used when no Gateway API
    /// route applies).
    virtual_services: HashMap<(String, String), Attached>,
}

impl Serialize for RouteTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.routes.iter().map(|r| &**r))
    }
}

fn sort_key(r: &Route, e: &Entry) -> impl Ord + use<> {
    let m = &r.rules[e.rule].matches[e.m];
    let (rank, len) = match &m.path {
        PathMatch::Exact(p) => (3, p.len()),
        PathMatch::Prefix(p) | PathMatch::RawPrefix(p) => (2, p.len()),
        PathMatch::Regex(p) => (1, p.as_str().len()),
    };
    (
        Reverse(rank),
        Reverse(len),
        Reverse(m.method.is_some()),
        Reverse(m.headers.len()),
        Reverse(m.query_params.len()),
        (r.created.is_none(), r.created.clone()),
        r.namespace.clone(),
        r.name.clone(),
        e.rule,
        e.m,
    )
}

impl RouteTable {
    /// Indexes `routes`; `gateway` is the waypoint's own Gateway (namespace, name): routes whose
    /// parent is that Gateway apply to every service it serves.
    pub fn new(routes: Vec<Route>, gateway: Option<(&str, &str)>) -> Self {
        let routes: Vec<Arc<Route>> = routes.into_iter().map(Arc::new).collect();
        let mut by_service: HashMap<(String, String), Attached> = HashMap::new();
        let mut virtual_services: HashMap<(String, String), Attached> = HashMap::new();
        let mut gw = Attached::default();
        for (ri, r) in routes.iter().enumerate() {
            let map = if r.kind == super::route::RouteKind::VirtualService {
                &mut virtual_services
            } else {
                &mut by_service
            };
            for p in &r.parents {
                let (target, port) = match p {
                    Parent::Service {
                        namespace,
                        name,
                        port,
                    } => {
                        let a = map.entry((namespace.clone(), name.clone())).or_default();
                        if *namespace != r.namespace {
                            a.consumer_namespaces.insert(r.namespace.clone());
                        }
                        (a, *port)
                    }
                    Parent::Gateway {
                        namespace,
                        name,
                        port,
                    } if gateway == Some((namespace.as_str(), name.as_str())) => (&mut gw, *port),
                    Parent::Gateway { .. } => continue,
                };
                for (rule, rl) in r.rules.iter().enumerate() {
                    for m in 0..rl.matches.len() {
                        target.entries.push(Entry {
                            route: ri,
                            rule,
                            m,
                            port,
                        });
                    }
                }
            }
        }
        let sort = |a: &mut Attached| {
            a.entries
                .sort_by_cached_key(|e| sort_key(&routes[e.route], e));
        };
        by_service.values_mut().for_each(sort);
        sort(&mut gw);
        Self {
            routes,
            by_service,
            gateway: gw,
            virtual_services,
        }
    }

    /// Every route in the table.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Whether any route attaches to the service `namespace/name` (any port, any client).
    pub fn has_routes_for(&self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        self.by_service.contains_key(&key)
            || self.virtual_services.contains_key(&key)
            || !self.gateway.entries.is_empty()
    }

    /// Selects the rule for `req` sent to `dst` by a client in namespace `client_ns` (from its
    /// identity; `None` for unknown clients). `host` is the request's host without port.
    pub fn select(
        &self,
        dst: &Destination<'_>,
        client_ns: Option<&str>,
        host: &str,
        req: &dyn RequestView,
    ) -> Selection<'_> {
        let key = (dst.namespace.to_owned(), dst.name.to_owned());
        if let Some(a) = self.by_service.get(&key) {
            // A client whose own namespace has routes for this service sees only those
            // (consumer routes); everyone else sees the service owner's (producer) routes.
            let consumer =
                client_ns.filter(|ns| *ns != dst.namespace && a.consumer_namespaces.contains(*ns));
            let want_ns = consumer.unwrap_or(dst.namespace);
            let sel = self.scan(a, dst.port, req, |r| r.namespace == want_ns);
            if sel != Selection::NoRoute {
                return sel;
            }
        }
        let sel = self.scan(&self.gateway, dst.port, req, |r| {
            hostname_applies(r, host, dst)
        });
        match (sel, self.virtual_services.get(&key)) {
            (Selection::NoRoute, Some(vs)) => self.scan(vs, dst.port, req, |_| true),
            (sel, _) => sel,
        }
    }

    fn scan<'s>(
        &'s self,
        a: &Attached,
        port: u16,
        req: &dyn RequestView,
        applies: impl Fn(&Route) -> bool,
    ) -> Selection<'s> {
        let mut any = false;
        for e in &a.entries {
            if e.port.is_some_and(|p| p != port) {
                continue;
            }
            let route = &*self.routes[e.route];
            if !applies(route) {
                continue;
            }
            any = true;
            let rule = &route.rules[e.rule];
            let matched = &rule.matches[e.m];
            if matched.matches(req) {
                return Selection::Matched {
                    route,
                    rule_index: e.rule,
                    rule,
                    matched,
                };
            }
        }
        if any {
            Selection::NotFound
        } else {
            Selection::NoRoute
        }
    }
}

/// Whether a Gateway-parent route's hostnames admit the request (`Host`, or the service's own
/// names).
fn hostname_applies(r: &Route, host: &str, dst: &Destination<'_>) -> bool {
    if r.hostnames.is_empty() {
        return true;
    }
    let short = format!("{}.{}", dst.name, dst.namespace);
    let candidates = [host, dst.hostname, dst.name, short.as_str()];
    r.hostnames.iter().any(|h| {
        candidates.iter().any(|c| {
            let c = c.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(suffix) => c.len() > suffix.len() + 1 && c.ends_with(&format!(".{suffix}")),
                None => *h == c,
            }
        })
    })
}

/// Picks a backend by weight; `roll` is any uniformly random number. `None` when every weight is
/// zero (or there is no backend): the request gets 500.
pub fn pick_backend(backends: &[Backend], roll: u64) -> Option<&Backend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut r = roll % total;
    for b in backends {
        let w = u64::from(b.weight);
        if r < w {
            return Some(b);
        }
        r -= w;
    }
    None
}

#[cfg(test)]
#[path = "table/tests.rs"]
mod tests;
