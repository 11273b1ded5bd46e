//! Where workload certificates come from: a CA file (testing mode) or control's CA.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mesh_identity::{CertificateAuthority, SpiffeId, TrustBundle, WorkloadCert};

/// Where workload certificates come from.
pub trait CertSource: Send + Sync + 'static {
    /// Issues a fresh certificate for `id`, blocking the calling thread until it is there.
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String>;

    /// Issues a fresh certificate for `id` without blocking a runtime thread. The default runs
    /// [`CertSource::issue`] on the blocking pool; a source that talks to a CA over the network
    /// overrides it.
    fn issue_async(
        self: Arc<Self>,
        id: SpiffeId,
    ) -> BoxFuture<'static, Result<WorkloadCert, String>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.issue(&id))
                .await
                .map_err(|e| format!("the certificate task failed: {e}"))?
        })
    }

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

/// Certificates from control's CA (the key never leaves ztunnel). [`CertSource::issue_async`]
/// is the path the proxies use; the blocking [`CertSource::issue`] remains for callers outside
/// any runtime thread.
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

    fn keep_roots(&self, roots: TrustBundle) {
        *self.roots.lock().unwrap_or_else(|p| p.into_inner()) = roots;
    }
}

impl CertSource for ControlCa {
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String> {
        let sign = || self.handle.block_on(self.client.sign(id));
        // On a multi-thread runtime the worker may block in place; a current-thread runtime
        // cannot, so the call waits on a helper thread instead.
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
        self.keep_roots(roots);
        Ok(cert)
    }

    fn issue_async(
        self: Arc<Self>,
        id: SpiffeId,
    ) -> BoxFuture<'static, Result<WorkloadCert, String>> {
        Box::pin(async move {
            let (cert, roots) = self.client.sign(&id).await.map_err(|e| e.to_string())?;
            self.keep_roots(roots);
            Ok(cert)
        })
    }

    fn bundle(&self) -> TrustBundle {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
