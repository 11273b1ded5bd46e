//! `deploy/` renders with `kubectl kustomize` and every rendered object validates against the Kubernetes schemas
//! (`kubernetes-validate --strict`, PyPI); custom resources are checked against the CRDs rendered with them.
//! Needs `kubectl` and `pip install kubernetes-validate`; the test fails saying so when they are missing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// Kubernetes version the manifests must be valid for (the oldest we support, k8s-openapi's `v1_32`).
const KUBE_VERSION: &str = "1.32.0";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; install it (see deploy/README.md)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deploy_renders_and_every_object_validates() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let rendered = run(
        Command::new("kubectl").arg("kustomize").arg(&deploy),
        "kubectl kustomize deploy/",
    );
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|d| serde_json::Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect();
    let kinds: BTreeSet<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "DaemonSet",
        "Service",
        "GatewayClass",
    ] {
        assert!(kinds.contains(want), "no {want} rendered: {kinds:?}");
    }

    let crds: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| {
            let group = d["spec"]["group"].as_str().unwrap_or_default().to_string();
            (
                group,
                d["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let api_version = d["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = d["kind"].as_str().unwrap_or_default();
        if crds.iter().any(|(g, k)| g == group && k == kind) {
            // A custom resource: its CRD is rendered with it and keeps any spec; it needs name and spec.
            assert!(d["metadata"]["name"].is_string(), "{kind} without a name");
            assert!(d["spec"].is_object(), "{kind} without a spec");
            continue;
        }
        let path = dir.path().join(format!("{i:02}-{kind}.json"));
        std::fs::write(&path, serde_json::to_vec(d).expect("json")).expect("write");
        files.push(path);
    }
    let out = run(
        Command::new("kubernetes-validate")
            .args(["-k", KUBE_VERSION, "--strict"])
            .args(&files),
        "kubernetes-validate",
    );
    assert!(!out.contains("ERROR") && !out.contains("WARN"), "{out}");
    assert_eq!(
        out.matches(" passed for resource ").count(),
        files.len(),
        "{out}"
    );
}
