//! A directory of Kubernetes YAML (multi-document files, `*.yaml`, `*.yml`, `*.json`, subdirectories included),
//! polled for changes. A file is applied all or nothing: when it does not parse, the objects it had before stay
//! and the error is logged. The same object in two files: the later path wins (a warning says so).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Source, Update};
use crate::index::Change;
use crate::objects::{Object, ObjectError, ObjectKey, parse_documents};

/// How often the directory is checked when none is configured: fast enough for tests and local mode.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// Errors reading the directory.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The directory or a file could not be read.
    #[error("cannot read {0}: {1}; check that the path exists and is readable")]
    Read(PathBuf, std::io::Error),
    /// A file is not valid.
    #[error("{0}: {1}")]
    Parse(PathBuf, ObjectError),
}

/// Modification stamp of a file.
type Stamp = (SystemTime, u64);
/// Objects read from files, shared with the index.
type Shared = Vec<Arc<Object>>;

/// The files source.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    poll: Duration,
    /// Each file's objects, shared with the index (one copy of every object in control).
    files: BTreeMap<PathBuf, (Stamp, Shared)>,
    /// How many files define each object (more than one: the later path wins).
    owners: HashMap<ObjectKey, usize>,
    /// Files (re)read by the last scan with the objects they had before, and whether a file disappeared.
    last: (Vec<(PathBuf, Shared)>, bool),
}

impl FileSource {
    /// A source for `dir`, checked every `poll`.
    pub fn new(dir: impl Into<PathBuf>, poll: Duration) -> Self {
        Self {
            dir: dir.into(),
            poll,
            files: BTreeMap::new(),
            owners: HashMap::new(),
            last: (Vec::new(), false),
        }
    }

    /// Re-reads changed files; returns every object when anything changed, with the per-file errors.
    pub fn scan(&mut self) -> Result<(Option<Shared>, Vec<FilesError>), FilesError> {
        let (changed, errors) = self.scan_files()?;
        Ok((changed.then(|| self.objects()), errors))
    }

    /// Re-reads changed files; returns whether anything changed, with the per-file errors.
    fn scan_files(&mut self) -> Result<(bool, Vec<FilesError>), FilesError> {
        let mut seen = BTreeSet::new();
        let mut errors = Vec::new();
        let mut changed = false;
        let mut reread = Vec::new();
        for path in list(&self.dir)? {
            let Some(stamp) = stamp(&path) else { continue };
            seen.insert(path.clone());
            if self.files.get(&path).is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            match read(&path) {
                Ok(objects) => {
                    self.count(&objects, 1);
                    let old = self.files.insert(path.clone(), (stamp, objects));
                    let old = old.map(|(_, o)| o).unwrap_or_default();
                    self.count(&old, -1);
                    reread.push((path, old));
                    changed = true;
                }
                Err(e) => {
                    // Remember the stamp so the same broken file is reported once, and keep its old objects.
                    let old = self.files.remove(&path).map(|(_, o)| o).unwrap_or_default();
                    self.files.insert(path, (stamp, old));
                    errors.push(e);
                }
            }
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect();
        for p in &gone {
            if let Some((_, objects)) = self.files.remove(p) {
                self.count(&objects, -1);
            }
        }
        changed |= !gone.is_empty();
        self.last = (reread, !gone.is_empty());
        Ok((changed, errors))
    }

    fn count(&mut self, objects: &[Arc<Object>], delta: isize) {
        for o in objects {
            let n = self.owners.entry(o.key()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.owners.remove(&o.key());
            }
        }
    }

    /// Like [`Self::scan`], as the update to apply: after the first scan, a change of files that define objects
    /// no other file defines is sent as the individual changes of those files' objects (so editing one file of
    /// a large directory costs that file, not a comparison of every object); otherwise the whole set.
    pub fn scan_update(
        &mut self,
        first: bool,
    ) -> Result<(Option<Update>, Vec<FilesError>), FilesError> {
        let (changed, errors) = self.scan_files()?;
        if !changed {
            return Ok((None, errors));
        }
        let (reread, removed) = std::mem::take(&mut self.last);
        let owners = |k: &ObjectKey| self.owners.get(k).copied().unwrap_or(0);
        // An object another file defines too: which one wins is decided over the whole set.
        let shared = reread.iter().any(|(path, old)| {
            let new = self
                .files
                .get(path)
                .map(|(_, o)| o.as_slice())
                .unwrap_or_default();
            let new_keys: BTreeSet<ObjectKey> = new.iter().map(|o| o.key()).collect();
            new_keys.iter().any(|k| owners(k) > 1)
                || old
                    .iter()
                    .map(|o| o.key())
                    .any(|k| !new_keys.contains(&k) && owners(&k) > 0)
        });
        if first || removed || shared {
            return Ok((Some(Update::Resync(self.objects())), errors));
        }
        let mut changes = Vec::new();
        for (path, old) in reread {
            let new = self
                .files
                .get(&path)
                .map(|(_, o)| o.as_slice())
                .unwrap_or_default();
            let before: HashMap<ObjectKey, &Arc<Object>> =
                old.iter().map(|o| (o.key(), o)).collect();
            let mut kept = BTreeSet::new();
            for o in new {
                let key = o.key();
                if before.get(&key).is_none_or(|b| **b != *o) {
                    changes.push(Change::Shared(o.clone()));
                }
                kept.insert(key);
            }
            changes.extend(
                before
                    .into_keys()
                    .filter(|k| !kept.contains(k))
                    .map(Change::Delete),
            );
        }
        Ok((Some(Update::Changes(changes)), errors))
    }

    fn objects(&self) -> Vec<Arc<Object>> {
        let mut by_key = BTreeMap::new();
        for (path, (_, objects)) in &self.files {
            for o in objects {
                if by_key.insert(o.key(), o.clone()).is_some() {
                    tracing::warn!(object = %o.key(), file = %path.display(), "defined in several files; this one wins");
                }
            }
        }
        by_key.into_values().collect()
    }
}

impl Source for FileSource {
    fn spawn(
        mut self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut synced = false;
            loop {
                match self.scan_update(!synced) {
                    Ok((update, errors)) => {
                        for e in errors {
                            tracing::error!(error = %e, "file rejected; its previous objects stay in force");
                        }
                        if let Some(update) = update {
                            tracing::info!(dir = %self.dir.display(), "config files changed");
                            if tx.send(update).await.is_err() {
                                return;
                            }
                        }
                        if !synced {
                            synced = true;
                            if tx.send(Update::Synced).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot scan the config directory"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        })
    }
}

/// Reads every object of the directory once (all files must be valid).
pub fn load_dir(dir: &Path) -> Result<Vec<Object>, FilesError> {
    let mut source = FileSource::new(dir, DEFAULT_POLL);
    let (objects, mut errors) = source.scan()?;
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    drop(source);
    let objects = objects.unwrap_or_default().into_iter();
    Ok(objects
        .map(|o| Arc::try_unwrap(o).unwrap_or_else(|o| (*o).clone()))
        .collect())
}

fn read(path: &Path) -> Result<Vec<Arc<Object>>, FilesError> {
    let text = std::fs::read_to_string(path).map_err(|e| FilesError::Read(path.into(), e))?;
    let objects = parse_documents(&text).map_err(|e| FilesError::Parse(path.into(), e))?;
    Ok(objects.into_iter().map(Arc::new).collect())
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Config files under `dir`, sorted; hidden files (editors' and atomic writers' temporaries) are skipped.
fn list(dir: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| FilesError::Read(dir.into(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FilesError::Read(dir.into(), e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            out.extend(list(&path)?);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
    const SA: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s, namespace: a}\n";

    fn names(objects: &[Arc<Object>]) -> Vec<String> {
        objects.iter().map(|o| o.key().to_string()).collect()
    }

    #[test]
    fn scans_changes_keeps_last_good_file_and_drops_removed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("ns.yaml"), NS).expect("write");
        std::fs::write(dir.path().join("sub/sa.yml"), SA).expect("write");
        std::fs::write(dir.path().join(".tmp.yaml"), "garbage: [").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let mut src = FileSource::new(dir.path(), DEFAULT_POLL);
        let (objects, errors) = src.scan().expect("scan");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            names(&objects.expect("first scan")),
            ["Namespace a", "ServiceAccount a/s"]
        );
        assert!(src.scan().expect("scan").0.is_none(), "nothing changed");

        // A broken edit is reported and the file's previous objects stay.
        std::fs::write(
            dir.path().join("sub/sa.yml"),
            "apiVersion: v1\nkind: Nope\nmetadata: {name: x}\n",
        )
        .expect("write");
        let (objects, errors) = src.scan().expect("scan");
        assert!(objects.is_none());
        assert!(
            errors[0].to_string().contains("unknown kind v1/Nope"),
            "{}",
            errors[0]
        );
        assert!(load_dir(dir.path()).is_err());

        std::fs::remove_file(dir.path().join("sub/sa.yml")).expect("rm");
        let (objects, _) = src.scan().expect("scan");
        assert_eq!(names(&objects.expect("changed")), ["Namespace a"]);
    }

    #[test]
    fn a_changed_file_is_sent_as_the_changes_of_its_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ns.yaml"), NS).expect("write");
        std::fs::write(dir.path().join("sa.yaml"), SA).expect("write");
        let mut src = FileSource::new(dir.path(), DEFAULT_POLL);
        let (update, _) = src.scan_update(true).expect("scan");
        assert!(matches!(update, Some(Update::Resync(o)) if o.len() == 2));
        assert!(src.scan_update(false).expect("scan").0.is_none());
        // Replace the ServiceAccount by another one: one upsert, one delete, nothing about the namespace.
        std::fs::write(
            dir.path().join("sa.yaml"),
            SA.replace("name: s,", "name: t,"),
        )
        .expect("write");
        let Some(Update::Changes(changes)) = src.scan_update(false).expect("scan").0 else {
            panic!("expected changes")
        };
        let described: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Upsert(o) => format!("upsert {}", o.key()),
                Change::Shared(o) => format!("upsert {}", o.key()),
                Change::Delete(k) => format!("delete {k}"),
            })
            .collect();
        assert_eq!(
            described,
            ["upsert ServiceAccount a/t", "delete ServiceAccount a/s"]
        );
        // The same object in two files, or a removed file: the whole set again.
        std::fs::write(
            dir.path().join("sa2.yaml"),
            SA.replace("name: s,", "name: t,"),
        )
        .expect("write");
        assert!(matches!(
            src.scan_update(false).expect("scan").0,
            Some(Update::Resync(_))
        ));
        std::fs::remove_file(dir.path().join("sa2.yaml")).expect("rm");
        assert!(
            matches!(src.scan_update(false).expect("scan").0, Some(Update::Resync(o)) if o.len() == 2)
        );
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let err = load_dir(Path::new("/nonexistent/mesh-config")).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/mesh-config"),
            "{err}"
        );
    }
}
