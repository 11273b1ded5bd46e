use std::time::Instant;

use super::*;

fn cfg(dir: &Path) -> InstallConfig {
    let plugin = dir.join("src-mesh-cni");
    std::fs::write(&plugin, b"#!binary v1").expect("plugin");
    InstallConfig {
        conf_dir: dir.join("net.d"),
        bin_dir: dir.join("bin"),
        plugin_binary: plugin,
        entry: serde_json::json!({"type": PLUGIN_TYPE, "agentSocket": "/run/x.sock"}),
        recheck: Duration::from_secs(30),
    }
}

const BRIDGE_LIST: &str = r#"{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap"}]}"#;

fn plugin_types(path: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    v["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn appends_once_converts_single_conf_and_copies_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = cfg(dir.path());
    assert_eq!(install_config(&cfg).expect("no primary yet"), None);
    std::fs::create_dir_all(&cfg.conf_dir).expect("mkdir");
    let list = cfg.conf_dir.join("10-k8s.conflist");
    std::fs::write(&list, BRIDGE_LIST).expect("write");
    std::fs::write(cfg.conf_dir.join("99-other.conflist"), BRIDGE_LIST).expect("write");
    assert_eq!(install_config(&cfg).expect("install"), Some(list.clone()));
    assert_eq!(plugin_types(&list), ["bridge", "portmap", "mesh-cni"]);
    assert_eq!(install_config(&cfg).expect("again"), None, "idempotent");
    assert_eq!(
        plugin_types(&cfg.conf_dir.join("99-other.conflist")),
        ["bridge", "portmap"]
    );

    // A single-plugin .conf becomes a .conflist.
    std::fs::write(
        cfg.conf_dir.join("05-single.conf"),
        r#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#,
    )
    .expect("write");
    let converted = install_config(&cfg).expect("convert").expect("written");
    assert_eq!(converted, cfg.conf_dir.join("05-single.conflist"));
    assert!(!cfg.conf_dir.join("05-single.conf").exists());
    assert_eq!(plugin_types(&converted), ["bridge", "mesh-cni"]);

    assert!(install_binary(&cfg).expect("copy"));
    assert!(
        !install_binary(&cfg).expect("same"),
        "identical binary not copied again"
    );
    let mode = std::fs::metadata(cfg.bin_dir.join(PLUGIN_TYPE))
        .expect("bin")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    std::fs::write(cfg.conf_dir.join("01-bad.conf"), "{oops").expect("write");
    assert!(matches!(
        install_config(&cfg),
        Err(InstallError::Invalid { .. })
    ));
}

#[test]
fn re_adds_itself_when_another_cni_rewrites_the_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = cfg(dir.path());
    std::fs::create_dir_all(&cfg.conf_dir).expect("mkdir");
    let list = cfg.conf_dir.join("10-k8s.conflist");
    std::fs::write(&list, BRIDGE_LIST).expect("write");
    let _installer = Installer::start(cfg.clone()).expect("start");
    assert!(plugin_types(&list).contains(&"mesh-cni".to_string()));
    // The primary CNI rewrites its config without us.
    let tmp = cfg.conf_dir.join("tmp-write");
    std::fs::write(&tmp, BRIDGE_LIST).expect("write");
    std::fs::rename(&tmp, &list).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !plugin_types(&list).contains(&"mesh-cni".to_string()) {
        assert!(Instant::now() < deadline, "mesh-cni not re-added");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(plugin_types(&list), ["bridge", "portmap", "mesh-cni"]);
}
