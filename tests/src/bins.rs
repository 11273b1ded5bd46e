//! Locating the workspace's binaries (ztunnel, mesh-cni, ...) for end-to-end tests.

use std::path::PathBuf;

/// Environment variable selecting the cargo profile directory (`debug` unless set).
pub const PROFILE_ENV: &str = "MESH_PROFILE";

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The target directory: `$CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The profile directory name: `$MESH_PROFILE` or `debug` (`release` for `--release` builds).
pub fn profile() -> String {
    std::env::var(PROFILE_ENV).unwrap_or_else(|_| "debug".into())
}

/// `<target>/<profile>/<name>`, if that file exists.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let path = target_dir().join(profile()).join(name);
    path.is_file().then_some(path)
}

/// `<target>/<profile>/<name>`. Panics, naming the command that builds it, when it is missing:
/// end-to-end tests cannot run without the binary and must say how to get it.
pub fn bin_path(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| {
        let release = if profile() == "release" { " --release" } else { "" };
        panic!(
            "binary `{name}` not found at {}; build it first with `cargo build{release} --bin {name}` \
             (run from {}); set {PROFILE_ENV}=release to use release builds",
            target_dir().join(profile()).join(name).display(),
            workspace_root().display(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_panics_with_the_build_command() {
        let err =
            std::panic::catch_unwind(|| bin_path("no-such-binary-xyz")).expect_err("must panic");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("cargo build"), "{msg}");
        assert!(msg.contains("--bin no-such-binary-xyz"), "{msg}");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest =
            std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root manifest");
        assert!(manifest.contains("[workspace]"));
    }
}
