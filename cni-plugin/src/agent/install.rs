//! The installer: puts `mesh-cni` into the node's CNI setup and keeps it there.
//!
//! - Copies the plugin binary into the CNI bin dir (temp file + rename, mode 0755).
//! - Appends our plugin entry to the primary network config (the first `*.conf`/`*.conflist`/
//!   `*.json` in the conf dir by name, as container runtimes choose it). A single-plugin
//!   `.conf` becomes a `.conflist` of the same name. An existing `mesh-cni` entry is replaced,
//!   so the file is rewritten only when it differs.
//! - Watches the conf dir (inotify, with a periodic re-check as a safety net) and adds the
//!   entry again when another CNI rewrites its config.
//!
//! The entry stays when the agent stops: a pod created while the agent is down must fail
//! (and be retried), never start uncaptured.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::Value;

/// Our plugin's `type` in conflists (and the binary's name in the bin dir).
pub const PLUGIN_TYPE: &str = "mesh-cni";

/// Errors of the installer.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be read or written.
    #[error("CNI install: {what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The primary config is not valid JSON or not a CNI config.
    #[error("CNI install: {path} is not a valid CNI network config: {detail} (fix or remove it)")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Where and what to install.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// CNI network config dir (e.g. `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// CNI binary dir (e.g. `/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// The `mesh-cni` binary to copy.
    pub plugin_binary: PathBuf,
    /// Our plugin entry (`{"type": "mesh-cni", "agentSocket": ...}`).
    pub entry: Value,
    /// Period of the safety-net re-check.
    pub recheck: Duration,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Copies the plugin binary into the bin dir unless an identical copy is there. Returns
/// whether it copied.
pub fn install_binary(cfg: &InstallConfig) -> Result<bool, InstallError> {
    let dest = cfg.bin_dir.join(PLUGIN_TYPE);
    let src = std::fs::read(&cfg.plugin_binary).map_err(io("reading", &cfg.plugin_binary))?;
    if std::fs::read(&dest).is_ok_and(|d| d == src) {
        return Ok(false);
    }
    std::fs::create_dir_all(&cfg.bin_dir).map_err(io("creating", &cfg.bin_dir))?;
    let tmp = cfg.bin_dir.join(format!(".{PLUGIN_TYPE}.tmp"));
    std::fs::write(&tmp, &src).map_err(io("writing", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io("renaming into", &dest))?;
    Ok(true)
}

/// The primary network config file of `dir`, if any.
pub fn primary_config(dir: &Path) -> Result<Option<PathBuf>, InstallError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("listing", dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "conf" || e == "conflist" || e == "json")
        })
        .collect();
    files.sort();
    Ok(files.into_iter().next())
}

/// Adds our entry to the primary config. Returns the file written, `None` when nothing had
/// to change or there is no primary config yet (the primary CNI has not written it).
pub fn install_config(cfg: &InstallConfig) -> Result<Option<PathBuf>, InstallError> {
    let Some(path) = primary_config(&cfg.conf_dir)? else {
        return Ok(None);
    };
    let text = std::fs::read(&path).map_err(io("reading", &path))?;
    let conf: Value = serde_json::from_slice(&text).map_err(|e| InstallError::Invalid {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let (updated, target) = with_entry(&conf, &cfg.entry, &path)?;
    if target == path && updated == conf {
        return Ok(None);
    }
    let json = serde_json::to_vec_pretty(&updated).map_err(|e| InstallError::Invalid {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let tmp = cfg.conf_dir.join(format!(".{PLUGIN_TYPE}.tmp"));
    std::fs::write(&tmp, json).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &target).map_err(io("renaming into", &target))?;
    if target != path {
        std::fs::remove_file(&path).map_err(io("removing the converted", &path))?;
    }
    tracing::info!(path = %target.display(), "mesh-cni added to the CNI config");
    Ok(Some(target))
}

/// `conf` as a conflist ending with exactly one `entry`, and the file it belongs in.
pub fn with_entry(
    conf: &Value,
    entry: &Value,
    path: &Path,
) -> Result<(Value, PathBuf), InstallError> {
    let invalid = |detail: &str| InstallError::Invalid {
        path: path.to_path_buf(),
        detail: detail.into(),
    };
    let obj = conf
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let (mut list, target) = match obj.get("plugins") {
        Some(Value::Array(_)) => (obj.clone(), path.to_path_buf()),
        Some(_) => return Err(invalid("`plugins` is not an array")),
        None => {
            if !obj.contains_key("type") {
                return Err(invalid("neither `plugins` nor `type`"));
            }
            let mut list = serde_json::Map::new();
            for key in ["cniVersion", "name"] {
                if let Some(v) = obj.get(key) {
                    list.insert(key.into(), v.clone());
                }
            }
            let mut single = obj.clone();
            single.remove("cniVersion");
            list.insert("plugins".into(), Value::Array(vec![Value::Object(single)]));
            (list, path.with_extension("conflist"))
        }
    };
    if let Some(Value::Array(plugins)) = list.get_mut("plugins") {
        plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
        plugins.push(entry.clone());
    }
    Ok((Value::Object(list), target))
}

/// One install round: binary (if missing or different) and config.
pub fn install_once(cfg: &InstallConfig) -> Result<(), InstallError> {
    install_binary(cfg)?;
    install_config(cfg)?;
    Ok(())
}

/// Keeps the plugin installed until dropped.
#[derive(Debug)]
pub struct Installer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Installer {
    /// Installs now, then watches the conf dir on a thread.
    pub fn start(cfg: InstallConfig) -> Result<Self, InstallError> {
        // Watch before the first install so no rewrite in between goes unnoticed.
        let inotify = watcher(&cfg.conf_dir);
        install_once(&cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cni-installer".into())
            .spawn(move || watch(&cfg, inotify, &flag))
            .map_err(io("starting the watcher for", Path::new("")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Installer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::warn!("CNI installer thread panicked");
        }
    }
}

/// How long one wait for inotify events lasts before the stop flag is checked.
const WAKE: Duration = Duration::from_millis(200);

/// An inotify watch on `dir`, or `None` (then only the periodic re-check runs).
fn watcher(dir: &Path) -> Option<Inotify> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .inspect_err(|err| tracing::warn!(%err, "inotify unavailable; re-checking periodically"))
        .ok()?;
    let mask = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY;
    if let Err(err) = std::fs::create_dir_all(dir) {
        tracing::warn!(%err, dir = %dir.display(), "cannot create the CNI conf dir");
    }
    match inotify.add_watch(dir, mask) {
        Ok(_) => Some(inotify),
        Err(err) => {
            tracing::warn!(%err, dir = %dir.display(), "cannot watch the CNI conf dir; re-checking periodically");
            None
        }
    }
}

fn watch(cfg: &InstallConfig, inotify: Option<Inotify>, stop: &AtomicBool) {
    let mut since_check = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        let woke = match &inotify {
            Some(i) => wait_events(i),
            None => {
                std::thread::sleep(WAKE);
                false
            }
        };
        since_check += WAKE;
        if woke || since_check >= cfg.recheck {
            since_check = Duration::ZERO;
            if let Err(err) = install_once(cfg) {
                tracing::warn!(%err, "keeping mesh-cni installed failed; will retry");
            }
        }
    }
}

/// Waits up to [`WAKE`] for inotify events; true if some arrived (they are drained).
fn wait_events(inotify: &Inotify) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(WAKE).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(n) if n > 0 => {
            let mut any = false;
            while let Ok(events) = inotify.read_events() {
                if events.is_empty() {
                    break;
                }
                any = true;
            }
            any
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
