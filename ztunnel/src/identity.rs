//! Workload certificates for the identities of pods on this node, and the TLS configs built from them.
//!
//! Certificates come from a [`CertSource`]: today a CA file (testing mode), later control's CA. Each identity's
//! certificate is renewed at half its lifetime; on a renewal failure the old one is kept while still valid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mesh_identity::tls::{self, ServerIdentity};
use mesh_identity::{CertificateAuthority, SpiffeId, TrustBundle, WorkloadCert};

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

/// Where workload certificates come from.
pub trait CertSource: Send + Sync + 'static {
    /// Issues a fresh certificate for `id`.
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String>;
    /// The roots peers must chain to.
    fn bundle(&self) -> TrustBundle;
}

/// Testing mode: ztunnel signs its own leaves with a CA key it was given.
pub struct LocalCa {
    ca: CertificateAuthority,
    lifetime: Duration,
}

impl LocalCa {
    /// A source signing leaves of `lifetime` with `ca`.
    pub fn new(ca: CertificateAuthority, lifetime: Duration) -> Self {
        Self { ca, lifetime }
    }
}

impl CertSource for LocalCa {
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String> {
        self.ca.issue(id, self.lifetime).map_err(|e| e.to_string())
    }
    fn bundle(&self) -> TrustBundle {
        self.ca.bundle()
    }
}

/// Certificates from control's CA (the key never leaves ztunnel). [`CertSource::issue`] is synchronous: it blocks
/// the calling worker thread (`block_in_place`) while control signs, which needs the multi-threaded runtime.
pub struct ControlCa {
    client: mesh_xds::ca::CaClient,
    roots: Mutex<TrustBundle>,
    handle: tokio::runtime::Handle,
}

impl ControlCa {
    /// A source asking control through `client`; `roots` until control sends its own.
    pub fn new(
        client: mesh_xds::ca::CaClient,
        roots: TrustBundle,
        handle: tokio::runtime::Handle,
    ) -> Self {
        Self {
            client,
            roots: Mutex::new(roots),
            handle,
        }
    }
}

impl CertSource for ControlCa {
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String> {
        let sign = || self.handle.block_on(self.client.sign(id));
        // On a multi-thread runtime the worker may block in place; a current-thread runtime
        // (a data-path worker) cannot, so the call waits on a helper thread instead.
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(sign).map_err(|e| e.to_string())
            }
            Ok(_) => std::thread::scope(|s| s.spawn(sign).join())
                .map_err(|_| "the certificate request panicked".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(_) => sign().map_err(|e| e.to_string()),
        };
        let (cert, roots) = result?;
        *self.roots.lock().unwrap_or_else(|p| p.into_inner()) = roots;
        Ok(cert)
    }
    fn bundle(&self) -> TrustBundle {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
struct Entry {
    cert: WorkloadCert,
    server: Arc<rustls::ServerConfig>,
    client_any: Arc<rustls::ClientConfig>,
}

/// Caches one certificate (and its TLS configs) per identity.
pub struct CertManager {
    source: Arc<dyn CertSource>,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
    clients: Mutex<HashMap<(SpiffeId, SpiffeId), Arc<rustls::ClientConfig>>>,
}

impl CertManager {
    /// A manager drawing certificates from `source`.
    pub fn new(source: Arc<dyn CertSource>) -> Self {
        Self {
            source,
            entries: Mutex::default(),
            clients: Mutex::default(),
        }
    }

    fn entry(&self, id: &SpiffeId) -> Result<Entry, IdentityError> {
        let now = SystemTime::now();
        let cached = self.lock_entries().get(id).cloned();
        if let Some(e) = &cached
            && !needs_renewal(&e.cert, now)
        {
            return Ok(e.clone());
        }
        match self.build(id) {
            Ok(fresh) => {
                self.lock_entries().insert(id.clone(), fresh.clone());
                self.lock_clients().retain(|(src, _), _| src != id);
                Ok(fresh)
            }
            // Keep serving with the old certificate while it is still valid.
            Err(e) => match cached {
                Some(old) if old.cert.not_after() > now => {
                    tracing::warn!(identity = %id, error = %e, "certificate renewal failed, keeping the old one");
                    Ok(old)
                }
                _ => Err(e),
            },
        }
    }

    fn build(&self, id: &SpiffeId) -> Result<Entry, IdentityError> {
        let cert = self
            .source
            .issue(id)
            .map_err(|e| IdentityError::Issue(id.clone(), e))?;
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

    /// Server config presenting `id`'s certificate (inbound HBONE of a pod with that identity).
    pub fn server_config(&self, id: &SpiffeId) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        Ok(self.entry(id)?.server)
    }

    /// Client config presenting `src` and accepting only a server proving `dst` (or any identity of the
    /// trust domain when `dst` is `None`).
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
        if let Some(c) = self.lock_clients().get(&key) {
            return Ok(c.clone());
        }
        let config = tls::client_config(
            &entry.cert,
            &self.source.bundle(),
            ServerIdentity::OneOf(vec![dst.clone()]),
        )
        .map_err(|e| IdentityError::Tls(src.clone(), Box::new(e)))?;
        self.lock_clients().insert(key, config.clone());
        Ok(config)
    }

    /// Certificates held now, for the config dump.
    pub fn dump(&self) -> serde_json::Value {
        let entries = self.lock_entries();
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
