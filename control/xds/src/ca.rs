//! Certificate requests to control's CA: a fresh key and CSR per request, the key never leaves the proxy.

use std::path::PathBuf;

use mesh_identity::{SpiffeId, TrustBundle, WorkloadCert};
use tonic::transport::Channel;

use crate::pb::{self, certificates_client::CertificatesClient};

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The token file could not be read.
    #[error("cannot read token file {0}: {1}")]
    Token(PathBuf, std::io::Error),
    /// Key, CSR or returned certificate problem.
    #[error("certificate for {0}: {1}")]
    Identity(SpiffeId, Box<mesh_identity::Error>),
    /// control refused or could not be reached.
    #[error("control CA refused {0}: {1}")]
    Status(SpiffeId, Box<tonic::Status>),
}

/// A client of control's CA.
#[derive(Clone)]
pub struct CaClient {
    channel: Channel,
    token_file: PathBuf,
    node: String,
}

impl CaClient {
    /// A client for the proxy on `node`, authenticating with the token in `token_file`.
    pub fn new(channel: Channel, token_file: PathBuf, node: String) -> Self {
        Self {
            channel,
            token_file,
            node,
        }
    }

    /// Asks control to sign a certificate for `id`; returns it and the roots.
    pub async fn sign(&self, id: &SpiffeId) -> Result<(WorkloadCert, TrustBundle), CaError> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| CaError::Token(self.token_file.clone(), e))?;
        let (csr, key) =
            mesh_identity::new_csr(id).map_err(|e| CaError::Identity(id.clone(), Box::new(e)))?;
        let req = pb::SignRequest {
            csr,
            identity: id.to_string(),
            node: self.node.clone(),
        };
        let req = crate::with_token(tonic::Request::new(req), &token)
            .map_err(|s| CaError::Status(id.clone(), Box::new(s)))?;
        let resp = CertificatesClient::new(self.channel.clone())
            .sign(req)
            .await
            .map_err(|s| CaError::Status(id.clone(), Box::new(s)))?
            .into_inner();
        let cert = WorkloadCert::from_pem(resp.cert_chain.as_bytes(), key.as_bytes())
            .map_err(|e| CaError::Identity(id.clone(), Box::new(e)))?;
        let roots = TrustBundle::from_pem(resp.roots.as_bytes())
            .map_err(|e| CaError::Identity(id.clone(), Box::new(e)))?;
        Ok((cert, roots))
    }
}
