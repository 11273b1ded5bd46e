//! The data path: per-pod listeners and the connection pipelines (accept -> resolve -> authorize -> connect ->
//! copy) for outbound (15001), inbound HBONE (15008) and inbound plaintext (15006).

pub mod addr;
pub mod connector;
pub mod inbound;
pub mod inbound_plain;
pub mod labels;
pub mod listeners;
pub mod outbound;
pub mod resolve;

use std::sync::Arc;
use std::time::Duration;

use mesh_api::handoff::PodInfo;
use mesh_identity::SpiffeId;
use tokio_util::sync::CancellationToken;

use crate::identity::CertManager;
use crate::metrics::Metrics;
use crate::socket::PodNetns;
use crate::state::State;

/// How long a client may take to complete the TLS handshake on 15008.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a local application or passthrough destination may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every pod's proxy shares.
pub struct Proxy {
    /// Config in force.
    pub state: Arc<State>,
    /// Workload certificates.
    pub certs: Arc<CertManager>,
    /// Istio metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when ztunnel drains; every pod's listeners and HBONE servers watch it.
    pub drain: CancellationToken,
    /// Trust domain of the workloads this ztunnel serves.
    pub trust_domain: String,
    /// HBONE client pool settings.
    pub pool: hbone::PoolConfig,
    /// HBONE server settings.
    pub serve: hbone::ServeOptions,
    /// The data-path workers every pod's listeners are spread over.
    pub workers: Arc<crate::workers::Workers>,
    /// Congestion control of the tunnel path's sockets (`None`: the kernel's default).
    pub tunnel_congestion: Option<crate::socket::Congestion>,
}

impl Proxy {
    /// Publishes the number of pods served.
    pub fn metrics_pods(&self, n: usize) {
        self.metrics
            .pods_enrolled()
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// One enrolled pod: its identity, its network namespace and its HBONE client pool.
pub struct PodContext {
    /// Shared proxy state.
    pub proxy: Arc<Proxy>,
    /// The pod as handed over by the node agent.
    pub info: PodInfo,
    /// The pod's workload identity.
    pub identity: SpiffeId,
    /// Creates sockets inside the pod's network namespace.
    pub netns: Arc<PodNetns>,
    /// HBONE connections made from this pod, one pool per data-path worker (a connection uses
    /// its own worker's pool, so its tunnels never cross threads).
    pools: Vec<hbone::Pool>,
}

impl PodContext {
    /// Context for `info`, creating sockets through `netns`.
    pub fn new(proxy: Arc<Proxy>, info: PodInfo, netns: PodNetns) -> Result<Self, String> {
        let identity = SpiffeId::new(&proxy.trust_domain, &info.namespace, &info.service_account);
        // Round-trip through the parser: a name that cannot form a valid SPIFFE id is refused here.
        let identity: SpiffeId = identity.to_string().parse().map_err(|e| format!("{e}"))?;
        let netns = Arc::new(netns);
        let connector = Arc::new(connector::PodConnector::new(
            netns.clone(),
            proxy.certs.clone(),
            proxy.tunnel_congestion.clone(),
        ));
        let pools = (0..proxy.workers.len())
            .map(|_| hbone::Pool::new(connector.clone(), proxy.pool.clone()))
            .collect();
        Ok(Self {
            proxy,
            info,
            identity,
            netns,
            pools,
        })
    }

    /// The HBONE pool of the calling worker.
    pub fn pool(&self) -> &hbone::Pool {
        let i = crate::workers::current();
        &self.pools[i.min(self.pools.len().saturating_sub(1))]
    }
}
