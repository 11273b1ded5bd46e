//! Every fuzz target over its checked-in corpus (`corpus/<target>/`: seeds and the inputs that
//! once found a bug) and over the generated seeds, plus checks that the seeds reach each target's
//! success path, so a target that silently stopped exercising anything fails here.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use mesh_fuzz::TARGETS;

/// Panics anywhere in the process, including tasks a runtime would otherwise swallow.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn target(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Runs `name` over its corpus directory and its generated seeds.
fn run_corpus(name: &str) {
    count_panics();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path.display().to_string(), data)
        })
        .collect();
    assert!(!inputs.is_empty(), "corpus {} is empty", dir.display());
    inputs.extend(
        mesh_fuzz::seeds::all()
            .into_iter()
            .filter(|(t, _)| *t == name)
            .map(|(t, seed)| (format!("generated seed of {t}"), seed)),
    );
    let run = target(name);
    for (what, data) in &inputs {
        let before = PANICS.load(Ordering::SeqCst);
        run(data);
        // Every prefix too: truncated input is the commonest malformed input.
        for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
            run(&data[..cut]);
        }
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            before,
            "{name} panicked on {what}"
        );
    }
}

#[test]
fn ca_csr_corpus() {
    run_corpus("ca_csr");
}

#[test]
fn cni_netconf_corpus() {
    run_corpus("cni_netconf");
}

#[test]
fn control_objects_corpus() {
    run_corpus("control_objects");
}

#[test]
fn hbone_wire_corpus() {
    run_corpus("hbone_wire");
}

#[test]
fn jwt_token_corpus() {
    run_corpus("jwt_token");
}

#[test]
fn xds_resource_corpus() {
    run_corpus("xds_resource");
}

#[test]
fn the_seed_connects_reach_the_handler_and_the_invalid_ones_do_not() {
    // Three CONNECTs with ports 8080-8082 are valid; port 0 and the GET are not.
    assert_eq!(mesh_fuzz::hbone_connects(&mesh_fuzz::hbone_seed()), 3);
    assert_eq!(
        mesh_fuzz::hbone_connects(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        0
    );
}

#[test]
fn only_the_signed_token_is_accepted() {
    let seed = mesh_fuzz::jwt_seed();
    assert_eq!(
        mesh_fuzz::jwt_principal(&seed).as_deref(),
        Some("https://issuer.fuzz.example/fuzzer")
    );
    let text = String::from_utf8(seed).unwrap();
    let (header, rest) = text.split_once('.').unwrap();
    let (_payload, signature) = rest.split_once('.').unwrap();
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"iss":"https://issuer.fuzz.example","sub":"admin","exp":4102444800}"#);
    let tampered = format!("{header}.{forged}.{signature}");
    assert_eq!(mesh_fuzz::jwt_principal(tampered.as_bytes()), None);
    let unsigned = format!(
        "{}.{forged}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)
    );
    assert_eq!(mesh_fuzz::jwt_principal(unsigned.as_bytes()), None);
}

#[test]
fn the_ca_signs_a_csr_for_the_caller_and_nothing_else() {
    assert!(mesh_fuzz::ca_signs(&mesh_fuzz::csr_seed()));
    let other = mesh_identity::SpiffeId::new("cluster.local", "fuzz", "someone-else");
    let (csr, _key) = mesh_identity::new_csr(&other).unwrap();
    assert!(!mesh_fuzz::ca_signs(csr.as_bytes()));
    assert!(!mesh_fuzz::ca_signs(
        b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"
    ));
}

#[test]
fn the_example_objects_translate_into_resources() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/control_objects");
    let total: usize = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| mesh_fuzz::control_resources(&std::fs::read(e.unwrap().path()).unwrap()))
        .sum();
    assert!(
        total > 0,
        "no corpus file of control_objects translates into a resource"
    );
}

#[test]
fn the_example_config_decodes_from_the_wire() {
    let seeds = mesh_fuzz::xds_seeds(mesh_fuzz::seeds::CONFIG_EXAMPLE);
    assert!(
        seeds.len() >= 4,
        "the example has workloads, a service and policies"
    );
    for s in seeds {
        assert!(mesh_fuzz::xds_decodes(&s));
    }
}
