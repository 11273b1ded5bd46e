//! Polling the config file and the routes directory for changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::{State, StateError, load_config, load_routes};
use crate::config::CONFIG_POLL;

/// What identifies a version of a file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The route files of `dir` (`*.yaml`, `*.yml`, `*.json`, not hidden), sorted by name.
pub fn route_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            !name.starts_with('.') && matches!(ext, "yaml" | "yml" | "json") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The state of a routes directory: its files and their stamps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteFiles(Vec<(PathBuf, Stamp)>);

impl RouteFiles {
    /// Reads the stamps of every route file of `dir` now.
    pub fn of(dir: &Path) -> Self {
        let files = route_files(dir).unwrap_or_default();
        Self(files.into_iter().map(|p| (p.clone(), stamp(&p))).collect())
    }
}

/// Polls `path` and swaps valid new versions of the mesh config in; invalid ones are logged and
/// recorded for `/config_dump`, the previous config stays.
pub async fn watch_config(path: PathBuf, state: Arc<State>, stop: CancellationToken) {
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match load_config(&path) {
            Ok(snapshot) => {
                let version = state.replace_mesh(snapshot);
                tracing::info!(path = %path.display(), version, "config updated");
            }
            Err(e) => {
                tracing::error!(error = %e, "config update rejected");
                state.reject_config(e.to_string());
            }
        }
    }
}

/// Loads the routes of `dir` into `state` (or records why not).
pub fn reload_routes(dir: &Path, gateway: (&str, &str), state: &State) {
    match load_routes(dir, gateway) {
        Ok(loaded) => {
            let count = loaded.table.routes().len();
            let version = state.replace_routes(loaded);
            tracing::info!(dir = %dir.display(), routes = count, version, "routes updated");
        }
        Err(StateError::InvalidRoutes { errors, .. }) => {
            for e in &errors {
                tracing::error!(error = %e, "route rejected; previous routes kept");
            }
            state.reject_routes(errors);
        }
        Err(e) => {
            tracing::error!(error = %e, "routes not readable; previous routes kept");
            state.reject_routes(vec![e.to_string()]);
        }
    }
}

/// Polls `dir` and reloads the whole route set whenever a file appears, changes or goes away.
pub async fn watch_routes(
    dir: PathBuf,
    gateway: (String, String),
    state: Arc<State>,
    mut last: RouteFiles,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        let now = RouteFiles::of(&dir);
        if now == last {
            continue;
        }
        last = now;
        reload_routes(&dir, (&gateway.0, &gateway.1), &state);
    }
}
