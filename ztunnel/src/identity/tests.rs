use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mesh_identity::CertificateAuthority;
use tokio::sync::watch;

use super::*;

const TD: &str = "cluster.local";

/// A CA whose asynchronous requests wait until the gate is open; the first certificate it
/// issues is already past half its lifetime (renewable), later ones are fresh.
struct Gated {
    ca: CertificateAuthority,
    calls: AtomicUsize,
    fail: AtomicBool,
    gate: watch::Sender<bool>,
}

impl Gated {
    fn new(open: bool) -> Arc<Self> {
        Arc::new(Self {
            ca: CertificateAuthority::generate(TD).unwrap(),
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            gate: watch::channel(open).0,
        })
    }

    fn make(&self, id: &SpiffeId, nth: usize) -> Result<WorkloadCert, String> {
        let now = SystemTime::now();
        let (nb, na) = if nth == 1 {
            (
                now - Duration::from_secs(600),
                now + Duration::from_secs(60),
            )
        } else {
            (
                now - Duration::from_secs(60),
                now + Duration::from_secs(3600),
            )
        };
        self.ca
            .issue_with_validity(id, nb, na)
            .map_err(|e| e.to_string())
    }
}

impl CertSource for Gated {
    fn issue(&self, id: &SpiffeId) -> Result<WorkloadCert, String> {
        let nth = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.make(id, nth)
    }

    fn issue_async(
        self: Arc<Self>,
        id: SpiffeId,
    ) -> BoxFuture<'static, Result<WorkloadCert, String>> {
        Box::pin(async move {
            let nth = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut open = self.gate.subscribe();
            open.wait_for(|o| *o).await.map_err(|e| e.to_string())?;
            if self.fail.load(Ordering::SeqCst) {
                return Err("the CA is down".into());
            }
            self.make(&id, nth)
        })
    }

    fn bundle(&self) -> mesh_identity::TrustBundle {
        self.ca.bundle()
    }
}

fn id() -> SpiffeId {
    SpiffeId::new(TD, "default", "app")
}

fn not_after(m: &CertManager) -> u64 {
    m.dump()[0]["notAfter"].as_u64().unwrap()
}

/// Guards against a hang (the property under test is "does not block"), not a timing threshold.
async fn soon<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("did not complete")
}

/// Waits until the source has been asked `n` times (its requests run as background tasks).
async fn calls_reach(source: &Gated, n: usize) {
    soon(async {
        while source.calls.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Gives a wrongly started extra request the time to show up before counting.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_one_request_and_get_the_certificate() {
    let source = Gated::new(false);
    let m = Arc::new(CertManager::new(source.clone()));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.ready(&id()).await })
        })
        .collect();
    calls_reach(&source, 1).await;
    settle().await;
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "one request in flight"
    );
    source.gate.send_replace(true);
    for w in waiters {
        soon(w).await.unwrap().unwrap();
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    m.server_config(&id()).unwrap();
    m.client_config(&id(), Some(&id())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_renewal_runs_in_the_background_while_the_old_certificate_serves() {
    let source = Gated::new(true);
    let m = CertManager::new(source.clone());
    soon(m.ready(&id())).await.unwrap();
    let first = not_after(&m);
    // The certificate is past half its lifetime; the CA now hangs.
    source.gate.send_replace(false);
    soon(m.ready(&id())).await.unwrap();
    m.server_config(&id())
        .expect("the old certificate serves meanwhile");
    assert_eq!(not_after(&m), first);
    calls_reach(&source, 2).await;
    m.server_config(&id()).unwrap();
    settle().await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 2, "only one renewal");
    source.gate.send_replace(true);
    soon(async {
        while not_after(&m) == first {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(not_after(&m) > first, "the renewed certificate replaced it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_old_certificate() {
    let source = Gated::new(true);
    let m = CertManager::new(source.clone());
    soon(m.ready(&id())).await.unwrap();
    let first = not_after(&m);
    source.fail.store(true, Ordering::SeqCst);
    soon(m.ready(&id())).await.unwrap();
    soon(async {
        while !m.inner.inflight.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    m.server_config(&id()).expect("still valid, still used");
    assert_eq!(not_after(&m), first);
}

#[tokio::test(flavor = "current_thread")]
async fn no_certificate_and_a_failing_ca_is_an_error() {
    let source = Gated::new(true);
    source.fail.store(true, Ordering::SeqCst);
    let m = CertManager::new(source.clone());
    let err = soon(m.ready(&id())).await.unwrap_err();
    assert!(err.to_string().contains("the CA is down"), "{err}");
    assert!(m.dump().as_array().unwrap().is_empty());
}
