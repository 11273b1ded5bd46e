//! The mesh CA (DESIGN.md 4.2): loading or creating the root, and the gRPC certificate service.
//!
//! A ztunnel may get certificates only for identities of pods on its own node: the caller's token must be the
//! ztunnel service account's, bound to the node named in the request, and the index must have a pod with the
//! requested namespace and service account on that node. Any other caller may get only its own identity.

pub mod cluster;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mesh_identity::{CertificateAuthority, SpiffeId};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller};
use crate::store::Store;
use mesh_xds::pb::{self, certificates_server::Certificates};

/// Istio's `cacerts` file names: a user-provided intermediate, its key, its chain and the root.
pub const CACERTS_FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
    "root-cert.pem",
];
/// How long a certificate request waits for control's first complete view of the cluster.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Files of a root control generated itself.
pub const SELF_SIGNED_FILES: [&str; 2] = ["root-cert.pem", "root-key.pem"];

/// Errors loading the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written.
    #[error("CA file {0}: {1}")]
    Io(String, std::io::Error),
    /// The CA material is invalid.
    #[error("CA in {0}: {1}")]
    Identity(String, Box<mesh_identity::Error>),
}

/// Loads the CA from `dir`: Istio-style `cacerts` (intermediate + root) when `ca-cert.pem` exists, else the root
/// control generated at an earlier start, else generates one and stores it there (key mode 0600).
pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<CertificateAuthority, CaError> {
    let read = |n: &str| {
        std::fs::read(dir.join(n)).map_err(|e| CaError::Io(dir.join(n).display().to_string(), e))
    };
    let shown = dir.display().to_string();
    let id_err = |e| CaError::Identity(shown.clone(), Box::new(e));
    if dir.join(CACERTS_FILES[0]).exists() {
        let mut chain = read(CACERTS_FILES[0])?;
        if dir.join(CACERTS_FILES[2]).exists() {
            chain.extend(read(CACERTS_FILES[2])?);
        }
        let key = read(CACERTS_FILES[1])?;
        let roots = read(CACERTS_FILES[3])?;
        return CertificateAuthority::from_pem_with_roots(&chain, &key, &roots, trust_domain)
            .map_err(id_err);
    }
    if dir.join(SELF_SIGNED_FILES[0]).exists() {
        return CertificateAuthority::from_pem(
            &read(SELF_SIGNED_FILES[0])?,
            &read(SELF_SIGNED_FILES[1])?,
            trust_domain,
        )
        .map_err(id_err);
    }
    let ca = CertificateAuthority::generate(trust_domain).map_err(id_err)?;
    std::fs::create_dir_all(dir).map_err(|e| CaError::Io(shown.clone(), e))?;
    write_private(&dir.join(SELF_SIGNED_FILES[1]), ca.key_pem().as_bytes())?;
    std::fs::write(dir.join(SELF_SIGNED_FILES[0]), ca.cert_pem())
        .map_err(|e| CaError::Io(dir.join(SELF_SIGNED_FILES[0]).display().to_string(), e))?;
    tracing::info!(dir = %shown, "generated a new mesh root CA");
    Ok(ca)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e| CaError::Io(path.display().to_string(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(data).map_err(err)
}

/// The gRPC certificate service.
pub struct CaService {
    ca: Arc<CertificateAuthority>,
    auth: Arc<dyn Authenticator>,
    store: Arc<Store>,
    ztunnel: (String, String),
    lifetime: Duration,
}

impl CaService {
    /// Signs with `ca`, leaves of `lifetime`; `ztunnel` = (namespace, service account) of ztunnels.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        auth: Arc<dyn Authenticator>,
        store: Arc<Store>,
        ztunnel: (String, String),
        lifetime: Duration,
    ) -> Self {
        Self {
            ca,
            auth,
            store,
            ztunnel,
            lifetime,
        }
    }

    /// Whether `caller` may have a certificate for `id`, asked on behalf of `node`.
    pub fn authorize(&self, caller: &Caller, node: &str, id: &SpiffeId) -> Result<(), Status> {
        if caller.namespace == id.namespace && caller.service_account == id.service_account {
            return Ok(());
        }
        if (caller.namespace.as_str(), caller.service_account.as_str())
            != (self.ztunnel.0.as_str(), self.ztunnel.1.as_str())
        {
            return Err(Status::permission_denied(format!(
                "{}/{} may only request its own identity; only ztunnels ({}/{}) request identities of other pods",
                caller.namespace, caller.service_account, self.ztunnel.0, self.ztunnel.1
            )));
        }
        match caller.node.as_deref() {
            Some(n) if n == node => {}
            Some(n) => {
                return Err(Status::permission_denied(format!(
                    "the token is bound to node {n:?}, the request is for node {node:?}"
                )));
            }
            None => {
                return Err(Status::permission_denied(
                    "the ztunnel token is not bound to a node",
                ));
            }
        }
        let index = self.store.lock();
        let present = index
            .workloads_on_node(node)
            .any(|w| w.namespace == id.namespace && w.service_account == id.service_account);
        if !present {
            return Err(Status::permission_denied(format!(
                "no pod with service account {}/{} runs on node {node:?}",
                id.namespace, id.service_account
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Certificates for CaService {
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let caller = crate::auth::caller(&*self.auth, req.metadata()).await?;
        // Which pods run where is only known once the source delivered a complete view.
        tokio::time::timeout(SYNC_WAIT, self.store.wait_synced())
            .await
            .map_err(|_| {
                Status::unavailable("control has not read the cluster state yet; retry shortly")
            })?;
        let req = req.into_inner();
        let id: SpiffeId = req
            .identity
            .parse()
            .map_err(|e| Status::invalid_argument(format!("identity {:?}: {e}", req.identity)))?;
        self.authorize(&caller, &req.node, &id)?;
        let chain = self
            .ca
            .sign_csr(req.csr.as_bytes(), &id, self.lifetime)
            .map_err(|e| Status::invalid_argument(format!("CSR for {id}: {e}")))?;
        tracing::info!(identity = %id, node = %req.node, "signed a workload certificate");
        Ok(Response::new(pb::SignResponse {
            cert_chain: chain,
            roots: self.ca.bundle().to_pem(),
        }))
    }
}
