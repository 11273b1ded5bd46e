//! Workload certificates for the identities of pods on this node, and the TLS configs built from them.
//!
//! Certificates come from a [`CertSource`]: control's CA, or a CA file in testing mode. Each identity's
//! certificate is renewed at half its lifetime, in the background: a connection never waits for a renewal
//! (it keeps using the current certificate, valid for the other half), and on a renewal failure the old one
//! is kept while still valid. Only an identity with no usable certificate makes a caller wait, and
//! [`CertManager::ready`] does that without blocking the thread, one request per identity however many
//! connections wait for it, so a data-path worker keeps serving its other connections meanwhile.

mod source;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use mesh_identity::tls::{self, ServerIdentity};
use mesh_identity::{SpiffeId, WorkloadCert};

pub use source::{CertSource, ControlCa, LocalCa};

/// Errors obtaining a certificate or TLS config.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The source could not issue a certificate for the identity.
    #[error("cannot obtain a certificate for {0}: {1}")]
    Issue(SpiffeId, String),
    /// The certificate could not be turned into a TLS config.
    #[error("cannot build TLS config for {0}: {1}")]
    Tls(SpiffeId, Box<mesh_identity::Error>),
}

#[derive(Clone)]
struct Entry {
    cert: WorkloadCert,
    server: Arc<rustls::ServerConfig>,
    client_any: Arc<rustls::ClientConfig>,
}

/// A certificate request in flight, shared by everyone waiting for that identity.
type Fetch = Shared<BoxFuture<'static, Result<(), String>>>;

/// Caches one certificate (and its TLS configs) per identity.
pub struct CertManager {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn CertSource>,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
    clients: Mutex<HashMap<(SpiffeId, SpiffeId), Arc<rustls::ClientConfig>>>,
    inflight: Mutex<HashMap<SpiffeId, Fetch>>,
    /// Where requests run: the runtime that created the manager (the control side), if any.
    runtime: Option<tokio::runtime::Handle>,
}

/// What the cache holds for an identity at one moment (`E`: the entry, or `()` when only the state matters).
enum Cached<E = Entry> {
    Fresh(E),
    /// Past half its lifetime but still valid: used while a renewal runs.
    Renewable(E),
    Missing,
}

impl CertManager {
    /// A manager drawing certificates from `source`. Requests run on the runtime that calls `new` when
    /// there is one (the proxies create the manager on their control-side runtime), else on the caller's.
    pub fn new(source: Arc<dyn CertSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                entries: Mutex::default(),
                clients: Mutex::default(),
                inflight: Mutex::default(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Waits until `id` has a usable certificate without blocking the thread: at once when one is cached
    /// (starting the renewal it may need in the background), else for the one request in flight for it.
    pub async fn ready(&self, id: &SpiffeId) -> Result<(), IdentityError> {
        // The state only: no entry is cloned on the connection's path.
        match self.inner.state(id) {
            Cached::Fresh(()) => Ok(()),
            Cached::Renewable(()) => {
                drop(Inner::fetch(&self.inner, id));
                Ok(())
            }
            Cached::Missing => Inner::fetch(&self.inner, id)
                .await
                .map_err(|e| IdentityError::Issue(id.clone(), e)),
        }
    }

    fn entry(&self, id: &SpiffeId) -> Result<Entry, IdentityError> {
        match self.inner.cached(id) {
            Cached::Fresh(e) => Ok(e),
            Cached::Renewable(e) => {
                drop(Inner::fetch(&self.inner, id));
                Ok(e)
            }
            // A caller that did not await `ready` first (none on the proxies' data paths) waits here.
            Cached::Missing => {
                let cert = self
                    .inner
                    .source
                    .issue(id)
                    .map_err(|e| IdentityError::Issue(id.clone(), e))?;
                let fresh = self.inner.build(id, cert)?;
                self.inner.store(id, fresh.clone());
                Ok(fresh)
            }
        }
    }

    /// Server config presenting `id`'s certificate (inbound HBONE of a pod with that identity). Await
    /// [`CertManager::ready`] first on an async path: without a cached certificate this call blocks.
    pub fn server_config(&self, id: &SpiffeId) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        Ok(self.entry(id)?.server)
    }

    /// Client config presenting `src` and accepting only a server proving `dst` (or any identity of the
    /// trust domain when `dst` is `None`). Like [`CertManager::server_config`], await `ready(src)` first.
    pub fn client_config(
        &self,
        src: &SpiffeId,
        dst: Option<&SpiffeId>,
    ) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
        let entry = self.entry(src)?;
        let Some(dst) = dst else {
            return Ok(entry.client_any);
        };
        let key = (src.clone(), dst.clone());
        if let Some(c) = self.inner.lock_clients().get(&key) {
            return Ok(c.clone());
        }
        let config = tls::client_config(
            &entry.cert,
            &self.inner.source.bundle(),
            ServerIdentity::OneOf(vec![dst.clone()]),
        )
        .map_err(|e| IdentityError::Tls(src.clone(), Box::new(e)))?;
        self.inner.lock_clients().insert(key, config.clone());
        Ok(config)
    }

    /// Certificates held now, for the config dump.
    pub fn dump(&self) -> serde_json::Value {
        let entries = self.inner.lock_entries();
        let mut certs: Vec<_> = entries
            .iter()
            .map(|(id, e)| {
                serde_json::json!({
                    "identity": id.to_string(),
                    "notBefore": unix(e.cert.not_before()),
                    "notAfter": unix(e.cert.not_after()),
                })
            })
            .collect();
        certs.sort_by_key(|v| v["identity"].as_str().map(str::to_owned));
        serde_json::Value::Array(certs)
    }
}

impl Inner {
    fn cached(&self, id: &SpiffeId) -> Cached {
        self.classify(id, Entry::clone)
    }

    fn state(&self, id: &SpiffeId) -> Cached<()> {
        self.classify(id, |_| ())
    }

    fn classify<E>(&self, id: &SpiffeId, take: impl FnOnce(&Entry) -> E) -> Cached<E> {
        let now = SystemTime::now();
        match self.lock_entries().get(id) {
            Some(e) if !needs_renewal(&e.cert, now) => Cached::Fresh(take(e)),
            Some(e) if e.cert.not_after() > now => Cached::Renewable(take(e)),
            _ => Cached::Missing,
        }
    }

    /// The request in flight for `id`, started if there is none. It runs as a task of its own, so a
    /// renewal nobody awaits still completes.
    fn fetch(this: &Arc<Self>, id: &SpiffeId) -> Fetch {
        let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = inflight.get(id) {
            return f.clone();
        }
        let task = {
            let (this, id) = (this.clone(), id.clone());
            async move {
                let result = this.refresh(&id).await;
                this.inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                result
            }
        };
        let handle = match &this.runtime {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        };
        let fetch = async move {
            handle
                .await
                .map_err(|e| format!("the certificate task failed: {e}"))?
        }
        .boxed()
        .shared();
        inflight.insert(id.clone(), fetch.clone());
        fetch
    }

    /// Requests a certificate for `id` and caches it; on failure a still-valid old one stays in use.
    async fn refresh(&self, id: &SpiffeId) -> Result<(), String> {
        let issued = self.source.clone().issue_async(id.clone()).await;
        let built = issued.and_then(|cert| self.build(id, cert).map_err(|e| e.to_string()));
        match built {
            Ok(entry) => {
                self.store(id, entry);
                Ok(())
            }
            Err(e) => {
                if let Cached::Renewable(()) = self.state(id) {
                    tracing::warn!(identity = %id, error = %e, "certificate renewal failed, keeping the old one");
                }
                Err(e)
            }
        }
    }

    fn build(&self, id: &SpiffeId, cert: WorkloadCert) -> Result<Entry, IdentityError> {
        let bundle = self.source.bundle();
        let server = tls::server_config(&cert, &bundle)
            .map_err(|e| IdentityError::Tls(id.clone(), Box::new(e)))?;
        let client_any = tls::client_config(&cert, &bundle, ServerIdentity::AnyInTrustDomain)
            .map_err(|e| IdentityError::Tls(id.clone(), Box::new(e)))?;
        Ok(Entry {
            cert,
            server,
            client_any,
        })
    }

    fn store(&self, id: &SpiffeId, entry: Entry) {
        self.lock_entries().insert(id.clone(), entry);
        self.lock_clients().retain(|(src, _), _| src != id);
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_clients(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(SpiffeId, SpiffeId), Arc<rustls::ClientConfig>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renew at half lifetime (DESIGN.md 4.2).
fn needs_renewal(cert: &WorkloadCert, now: SystemTime) -> bool {
    let (nb, na) = (cert.not_before(), cert.not_after());
    let half = na.duration_since(nb).unwrap_or_default() / 2;
    now >= nb + half
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
