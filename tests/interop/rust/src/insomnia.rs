//! INSOMNIA's consolidation lock (seed 002, `_staging/.consolidation.lock`).
//!
//! Copied from the seed: `LOCK_FILE`, `LockRecord` (the seed file lost its
//! generic arguments in extraction; they are `DateTime<Utc>` and `Vec<Uuid>`,
//! as `Utc::now()` and the test's `uuid::Uuid::now_v7()` show), `LockError`,
//! `StagingLock` with `acquire` (a parseable lock with a live pid is InUse,
//! even for the same pid; an unparseable or dead one is overwritten with
//! `serde_json::to_string_pretty` via `fs::write`), `release_with_cleanup`,
//! `release_only`, and `pid_is_alive`.
//!
//! Filled in: `WorkspaceLayout` (`crate::workspace`; `staging_dir()` is
//! `<root>/_staging`, as the preset and the seed's tests use it).
//! `tracing::warn!` is dropped.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::util::{self, Failure, Outcome};

// ─── Filled in: crate::workspace::WorkspaceLayout ────────────────────────────

pub struct WorkspaceLayout {
    root: PathBuf,
}

impl WorkspaceLayout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("_staging")
    }
}

// ─── Seed ─────────────────────────────────────────────────────────────────────

const LOCK_FILE: &str = ".consolidation.lock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockRecord {
    pub pid: u32,
    pub pod_name: String,
    pub started_at: DateTime<Utc>,
    pub consumed_ids: Vec<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("consolidation lock held by live pid {pid} (pod {pod_name:?})")]
    InUse { pid: u32, pod_name: String },
    #[error("io error at {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to (de)serialize lock record: {0}")]
    Serde(#[from] serde_json::Error),
}

impl LockError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

#[derive(Debug)]
pub struct StagingLock {
    path: PathBuf,
    record: LockRecord,
}

impl StagingLock {
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn acquire(
        layout: &WorkspaceLayout,
        pid: u32,
        pod_name: impl Into<String>,
        consumed_ids: Vec<Uuid>,
    ) -> Result<Self, LockError> {
        let staging_dir = layout.staging_dir();
        fs::create_dir_all(&staging_dir).map_err(|e| LockError::io(&staging_dir, e))?;
        let path = staging_dir.join(LOCK_FILE);
        if path.exists() {
            let raw = fs::read_to_string(&path).map_err(|e| LockError::io(&path, e))?;
            // 壊れた lock は stale とみなして上書き許可。
            if let Ok(existing) = serde_json::from_str::<LockRecord>(&raw) {
                if pid_is_alive(existing.pid) {
                    return Err(LockError::InUse {
                        pid: existing.pid,
                        pod_name: existing.pod_name,
                    });
                }
            }
        }
        let record = LockRecord {
            pid,
            pod_name: pod_name.into(),
            started_at: Utc::now(),
            consumed_ids,
        };
        let json = serde_json::to_string_pretty(&record)?;
        fs::write(&path, json).map_err(|e| LockError::io(&path, e))?;
        Ok(Self { path, record })
    }

    pub fn release_with_cleanup(self, layout: &WorkspaceLayout) {
        let staging_dir = layout.staging_dir();
        for id in &self.record.consumed_ids {
            let target = staging_dir.join(format!("{id}.json"));
            match fs::remove_file(&target) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => {}
            }
        }
        self.unlink_lock_only();
    }

    pub fn release_only(self) {
        self.unlink_lock_only();
    }

    fn unlink_lock_only(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn pid_is_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: `kill` with sig 0 only probes whether the target pid exists.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    if rc == 0 {
        return true;
    }
    let errno = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL);
    errno != libc::ESRCH
}

// ─── Command line ─────────────────────────────────────────────────────────────

const VERBS: &str = "seedio insomnia write <workspace> <pid> <pod_name> [<uuid>...]  (StagingLock::acquire, left held as after a crash; prints the record)
seedio insomnia hold <workspace> <pod_name> <cleanup|only> [<uuid>...]  (acquire for this process; print \"ready <pid>\"; at stdin EOF release_with_cleanup or release_only)
seedio insomnia check <workspace> <expected LockRecord JSON | none>";

fn lock_failure(e: LockError) -> Failure {
    match e {
        LockError::InUse { .. } => Failure::Refused(e.to_string()),
        _ => Failure::Failed(e.to_string()),
    }
}

fn uuids(args: &[String]) -> Result<Vec<Uuid>, Failure> {
    args.iter()
        .map(|s| Uuid::parse_str(s).map_err(|e| Failure::Usage(format!("{s:?}: {e}"))))
        .collect()
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    match verb {
        "write" => {
            if rest.len() < 3 {
                return Err(Failure::Usage(format!("usage:\n{VERBS}")));
            }
            let layout = WorkspaceLayout::new(PathBuf::from(&rest[0]));
            let pid: u32 = util::number_arg("pid", &rest[1])?;
            let ids = uuids(&rest[3..])?;
            let lock = StagingLock::acquire(&layout, pid, rest[2].clone(), ids).map_err(lock_failure)?;
            // The seed's Drop does nothing: the file stays, as after a crash.
            util::print_json(lock.record())
        }
        "hold" => {
            if rest.len() < 3 || (rest[2] != "cleanup" && rest[2] != "only") {
                return Err(Failure::Usage(format!("usage:\n{VERBS}")));
            }
            let layout = WorkspaceLayout::new(PathBuf::from(&rest[0]));
            let ids = uuids(&rest[3..])?;
            let lock = StagingLock::acquire(&layout, std::process::id(), rest[1].clone(), ids)
                .map_err(lock_failure)?;
            println!("ready {}", std::process::id());
            use std::io::{Read, Write};
            std::io::stdout()
                .flush()
                .map_err(|e| Failure::Failed(format!("flush stdout: {e}")))?;
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            if rest[2] == "cleanup" {
                lock.release_with_cleanup(&layout);
            } else {
                lock.release_only();
            }
            Ok(())
        }
        // Reads the lock as acquire() does (read_to_string + from_str) and
        // compares every field; "none" expects no lock file.
        "check" => {
            util::want(rest, 2, VERBS)?;
            let layout = WorkspaceLayout::new(PathBuf::from(&rest[0]));
            let path = layout.staging_dir().join(LOCK_FILE);
            if rest[1] == "none" {
                return if path.exists() {
                    Err(Failure::Failed(format!("{} exists", path.display())))
                } else {
                    Ok(())
                };
            }
            let expected: LockRecord = util::from_json_arg("expected", &rest[1])?;
            let raw = fs::read_to_string(&path)
                .map_err(|e| Failure::Failed(format!("read {}: {e}", path.display())))?;
            let actual: LockRecord = serde_json::from_str(&raw).map_err(|e| {
                Failure::Failed(format!(
                    "{} does not parse as a LockRecord (the seed would treat it as stale): {e}",
                    path.display()
                ))
            })?;
            util::expect_eq("lock record", &actual, &expected)
        }
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
