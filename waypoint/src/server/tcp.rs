//! Opaque TCP through the waypoint: the tunnel's bytes go to one endpoint of the service (or the
//! addressed workload) over a new upstream tunnel.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use ztunnel::telemetry::LogAddr;

use crate::proxy::{Downstream, Proxy};
use crate::resolve::{self, Picked, Target};

/// Relays `io` to an endpoint of the tunnel's destination; one access-log record at the end.
pub async fn proxy<S>(proxy: &Proxy, down: &Downstream, mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let picked: Result<Picked, String> = match &down.target {
        Target::Workload {
            endpoint,
            name,
            namespace,
        } => Ok(Picked {
            endpoint: endpoint.clone(),
            workload: name.clone(),
            namespace: namespace.clone(),
        }),
        Target::Service {
            namespace,
            name,
            port,
            ..
        } => {
            let mesh = proxy.state.mesh();
            match resolve::endpoints(&mesh, namespace, name, *port, None) {
                Ok((_, eps)) if !eps.is_empty() => {
                    Ok(eps[rand::random_range(0..eps.len())].clone())
                }
                Ok(_) => Err(format!("no healthy upstream for {namespace}/{name}")),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let result = match picked {
        Ok(p) => match proxy
            .upstreams
            .connect(&p.endpoint, Some(down.client))
            .await
        {
            Ok(mut up) => {
                let labels = proxy.peer_labels(down, Some(&p), "tcp", "-");
                proxy.metrics.tcp_open(&labels);
                let copied = tokio::io::copy_bidirectional(&mut io, &mut up).await;
                let (from_client, to_client) = copied.as_ref().map_or((0, 0), |c| *c);
                proxy.metrics.tcp_close(&labels, from_client, to_client);
                copied
                    .map(|(sent, recv)| (p, sent, recv))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    };
    let duration = format!("{}ms", start.elapsed().as_millis());
    match result {
        Ok((p, sent, recv)) => tracing::event!(
            target: "access",
            tracing::Level::INFO,
            src.addr = %LogAddr(down.client), src.identity = %down.peer,
            dst.addr = %LogAddr(down.authority), upstream = %LogAddr(p.endpoint.addr),
            dst.workload = %p.workload, protocol = "tcp",
            bytes_recv = sent, bytes_sent = recv, duration, "connection complete"
        ),
        Err(error) => tracing::event!(
            target: "access",
            tracing::Level::WARN,
            src.addr = %LogAddr(down.client), src.identity = %down.peer,
            dst.addr = %LogAddr(down.authority), protocol = "tcp", duration, error,
            "connection complete"
        ),
    }
}
