//! algocline's pool registry (seed 000, `algocline_app/pool/registry.rs`).
//!
//! Copied from the seed: `PoolSessionEntry`, `PoolRegistry` with
//! `load_or_default`, `save` (tempfile::NamedTempFile in the same directory,
//! fsync, persist = rename; directory 0700, file 0600), `scan_and_gc`, `add`,
//! `remove`, `find`, and `with_registry_lock`. Serde attributes exactly as in
//! the seed (none: unknown keys are ignored, every field is required).
//!
//! Filled in (outside the seed file): `PoolError` (`crate::pool`), the lock
//! helper `service::lock::with_exclusive_lock` (an exclusive flock on the lock
//! file, created 0600 as the seed's test T6 requires, its directory created
//! if missing; fs4's `lock_exclusive` is flock(2), as fs2's is) and `now_iso8601` (`service::manifest`; written
//! here as "YYYY-MM-DDTHH:MM:SSZ", the format procreg's preset writes).
//! `tracing::warn!` is dropped.

use std::fs::OpenOptions;
use std::path::Path;
use std::path::PathBuf;

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::util::{self, failed, Failure, Outcome};

// ─── Filled in: errors, clock, lock helper ───────────────────────────────────

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("registry corrupted: {0}")]
    RegistryCorrupted(String),
    /// Not in algocline: only `--try-lock` (a test aid) can produce it.
    #[error("registry lock {0} is held by another process")]
    WouldBlock(String),
}

fn now_iso8601() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `service::lock::with_exclusive_lock`: flock(LOCK_EX) on `lock_path`
/// (created 0600, with its directory, "if absent") around `f`; released when
/// the file is dropped.
fn with_exclusive_lock<F, R>(lock_path: &Path, blocking: bool, f: F) -> Result<R, PoolError>
where
    F: FnOnce() -> Result<R, PoolError>,
{
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to create {}: {e}", parent.display()))
        })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .open(lock_path)
        .map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to open lock {}: {e}", lock_path.display()))
        })?;
    if blocking {
        file.lock_exclusive().map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to lock {}: {e}", lock_path.display()))
        })?;
    } else if file.try_lock_exclusive().is_err() {
        return Err(PoolError::WouldBlock(lock_path.display().to_string()));
    }
    let result = f();
    drop(file);
    result
}

// ─── Entry (seed) ─────────────────────────────────────────────────────────────

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolSessionEntry {
    pub sid: String,
    pub pid: u32,
    pub sock: PathBuf,
    pub version: String,
    pub created_at: String,
}

impl PoolSessionEntry {
    pub fn new(
        sid: impl Into<String>,
        pid: u32,
        sock: PathBuf,
        version: impl Into<String>,
    ) -> Self {
        Self {
            sid: sid.into(),
            pid,
            sock,
            version: version.into(),
            created_at: now_iso8601(),
        }
    }
}

// ─── Registry (seed) ──────────────────────────────────────────────────────────

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PoolRegistry {
    pub sessions: Vec<PoolSessionEntry>,
}

impl PoolRegistry {
    pub fn load_or_default(path: &Path) -> Result<Self, PoolError> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let content = std::fs::read_to_string(path).map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to read {}: {e}", path.display()))
        })?;
        serde_json::from_str(&content).map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to parse {}: {e}", path.display()))
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), PoolError> {
        let parent = path.parent().ok_or_else(|| {
            PoolError::RegistryCorrupted(format!(
                "registry path has no parent directory: {}",
                path.display()
            ))
        })?;

        std::fs::create_dir_all(parent).map_err(|e| {
            PoolError::RegistryCorrupted(format!(
                "failed to create registry directory {}: {e}",
                parent.display()
            ))
        })?;

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).map_err(
                |e| {
                    PoolError::RegistryCorrupted(format!(
                        "failed to set permissions on {}: {e}",
                        parent.display()
                    ))
                },
            )?;
        }

        let content = serde_json::to_string_pretty(self).map_err(|e| {
            PoolError::RegistryCorrupted(format!("failed to serialize registry: {e}"))
        })?;

        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| {
            PoolError::RegistryCorrupted(format!(
                "failed to create temp file in {}: {e}",
                parent.display()
            ))
        })?;

        {
            use std::io::Write;
            tmp.write_all(content.as_bytes()).map_err(|e| {
                PoolError::RegistryCorrupted(format!("failed to write registry temp file: {e}"))
            })?;
            tmp.as_file().sync_all().map_err(|e| {
                PoolError::RegistryCorrupted(format!("failed to fsync registry temp file: {e}"))
            })?;
        }

        tmp.persist(path).map_err(|e| {
            PoolError::RegistryCorrupted(format!(
                "failed to atomically replace {} with temp file: {e}",
                path.display()
            ))
        })?;

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    PoolError::RegistryCorrupted(format!(
                        "failed to set permissions on {}: {e}",
                        path.display()
                    ))
                },
            )?;
        }

        Ok(())
    }

    pub fn scan_and_gc(&mut self) -> Result<Vec<PoolSessionEntry>, PoolError> {
        self.sessions.retain(|entry| {
            let pid_t = match i32::try_from(entry.pid) {
                Ok(p) => p,
                Err(_) => return false,
            };
            // SAFETY: as in the seed: pid > 0 fits in i32; sig 0 only probes.
            let result = unsafe { libc::kill(pid_t, 0) };
            result == 0
        });
        Ok(self.sessions.clone())
    }

    pub fn add(&mut self, entry: PoolSessionEntry) {
        self.sessions.push(entry);
    }

    pub fn remove(&mut self, sid: &str) -> bool {
        let before = self.sessions.len();
        self.sessions.retain(|e| e.sid != sid);
        self.sessions.len() < before
    }

    pub fn find(&self, sid: &str) -> Option<&PoolSessionEntry> {
        self.sessions.iter().find(|e| e.sid == sid)
    }
}

pub fn with_registry_lock<F, R>(lock_path: &Path, f: F) -> Result<R, PoolError>
where
    F: FnOnce() -> Result<R, PoolError>,
{
    with_exclusive_lock(lock_path, true, f)
}

// ─── Command line ─────────────────────────────────────────────────────────────

const VERBS: &str = "seedio algocline write <registry.json> <sid> <pid> <sock> <version> [--try-lock]
seedio algocline write-many <registry.json> <sid-prefix> <count> <pid>
seedio algocline remove <registry.json> <sid>
seedio algocline gc <registry.json>
seedio algocline check <registry.json> <expected {\"sessions\":[...]}>
seedio algocline dump <registry.json>";

/// `registry.lock` beside `registry.json`, as algocline names it.
fn lock_path_for(registry: &Path) -> PathBuf {
    registry.with_file_name("registry.lock")
}

fn pool_failure(e: PoolError) -> Failure {
    match e {
        PoolError::WouldBlock(_) => Failure::Refused(e.to_string()),
        PoolError::RegistryCorrupted(_) => Failure::Failed(e.to_string()),
    }
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    match verb {
        // The seed's mutation cycle: lock, load, add, save (test T4's body).
        // Prints the entry written (created_at is stamped here).
        "write" => {
            let try_lock = rest.len() == 6 && rest[5] == "--try-lock";
            if !try_lock {
                util::want(rest, 5, VERBS)?;
            }
            let path = PathBuf::from(&rest[0]);
            let pid: u32 = util::number_arg("pid", &rest[2])?;
            let entry = PoolSessionEntry::new(rest[1].clone(), pid, PathBuf::from(&rest[3]), rest[4].clone());
            let written = entry.clone();
            with_exclusive_lock(&lock_path_for(&path), !try_lock, || {
                let mut reg = PoolRegistry::load_or_default(&path)?;
                reg.add(entry);
                reg.save(&path)
            })
            .map_err(pool_failure)?;
            util::print_json(&written)
        }
        // `count` separate lock/load/add/save cycles, as each task of the
        // seed's concurrent-writers test does.
        "write-many" => {
            util::want(rest, 4, VERBS)?;
            let path = PathBuf::from(&rest[0]);
            let count: u32 = util::number_arg("count", &rest[2])?;
            let pid: u32 = util::number_arg("pid", &rest[3])?;
            for i in 0..count {
                let sid = format!("{}{i}", rest[1]);
                let entry = PoolSessionEntry::new(
                    sid.clone(),
                    pid,
                    PathBuf::from(format!("/tmp/alc-pool/{sid}.sock")),
                    "0.30.0",
                );
                with_registry_lock(&lock_path_for(&path), || {
                    let mut reg = PoolRegistry::load_or_default(&path)?;
                    reg.add(entry);
                    reg.save(&path)
                })
                .map_err(pool_failure)?;
            }
            Ok(())
        }
        "remove" => {
            util::want(rest, 2, VERBS)?;
            let path = PathBuf::from(&rest[0]);
            let removed = with_registry_lock(&lock_path_for(&path), || {
                let mut reg = PoolRegistry::load_or_default(&path)?;
                let removed = reg.remove(&rest[1]);
                reg.save(&path)?;
                Ok(removed)
            })
            .map_err(pool_failure)?;
            if removed {
                Ok(())
            } else {
                Err(Failure::Failed(format!("no session {:?}", rest[1])))
            }
        }
        // scan_and_gc under the lock, saved; prints the surviving sids.
        "gc" => {
            util::want(rest, 1, VERBS)?;
            let path = PathBuf::from(&rest[0]);
            let survivors = with_registry_lock(&lock_path_for(&path), || {
                let mut reg = PoolRegistry::load_or_default(&path)?;
                let survivors = reg.scan_and_gc()?;
                reg.save(&path)?;
                Ok(survivors)
            })
            .map_err(pool_failure)?;
            let sids: Vec<&str> = survivors.iter().map(|e| e.sid.as_str()).collect();
            util::print_json(&sids)
        }
        "check" => {
            util::want(rest, 2, VERBS)?;
            let path = PathBuf::from(&rest[0]);
            let expected: PoolRegistry = util::from_json_arg("expected", &rest[1])?;
            let actual = with_registry_lock(&lock_path_for(&path), || PoolRegistry::load_or_default(&path))
                .map_err(pool_failure)?;
            for entry in &expected.sessions {
                if actual.find(&entry.sid).is_none() {
                    return Err(Failure::Failed(format!("session {:?} is missing", entry.sid)));
                }
            }
            util::expect_eq("registry", &actual, &expected)
        }
        "dump" => {
            util::want(rest, 1, VERBS)?;
            let path = PathBuf::from(&rest[0]);
            let reg = PoolRegistry::load_or_default(&path).map_err(failed("load"))?;
            util::print_json(&reg)
        }
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
