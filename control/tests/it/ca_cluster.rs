//! The in-cluster CA root against the fake API server: generated once into a Secret and reused, published in a
//! ConfigMap; a mounted `cacerts` directory wins over the Secret.

use crate::fake_api::FakeApi;
use mesh_control::ca::cluster::{self, ROOT_CONFIGMAP, ROOT_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_created_once_in_a_secret_and_published() {
    let api = FakeApi::new();
    let client = api.client().await;
    let empty = tempfile::tempdir().expect("tempdir");
    let first = cluster::load_or_create(&client, "istio-system", empty.path(), "cluster.local")
        .await
        .expect("created");
    let path = format!("/api/v1/namespaces/istio-system/secrets/{ROOT_SECRET}");
    assert!(
        api.singles.lock().expect("lock").contains_key(&path),
        "Secret created"
    );
    let again = cluster::load_or_create(&client, "istio-system", empty.path(), "cluster.local")
        .await
        .expect("loaded");
    assert_eq!(
        again.cert_pem(),
        first.cert_pem(),
        "a restart keeps the same root"
    );

    cluster::publish_root(&client, "istio-system", &first)
        .await
        .expect("published");
    let patches = api.patches.lock().expect("lock").clone();
    let (p, q, body) = patches.last().expect("a patch");
    assert_eq!(
        p,
        &format!("/api/v1/namespaces/istio-system/configmaps/{ROOT_CONFIGMAP}")
    );
    assert!(q.contains("fieldManager=mesh-control"), "{q}");
    assert_eq!(body["data"]["root-cert.pem"], first.bundle().to_pem());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_cacerts_win_over_the_secret() {
    let api = FakeApi::new();
    let client = api.client().await;
    let root = mesh_identity::CertificateAuthority::generate("cluster.local").expect("root");
    let inter = root
        .issue_intermediate("mesh intermediate", std::time::Duration::from_secs(3600))
        .expect("inter");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca-cert.pem"), inter.cert_pem()).expect("write");
    std::fs::write(dir.path().join("ca-key.pem"), inter.key_pem()).expect("write");
    std::fs::write(dir.path().join("root-cert.pem"), root.cert_pem()).expect("write");
    let ca = cluster::load_or_create(&client, "istio-system", dir.path(), "cluster.local")
        .await
        .expect("cacerts");
    assert_eq!(
        ca.bundle().to_pem(),
        root.bundle().to_pem(),
        "roots from cacerts"
    );
    assert!(
        api.singles.lock().expect("lock").is_empty(),
        "no Secret created"
    );
}
