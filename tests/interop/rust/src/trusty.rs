//! trusty-memory's daemon PID lock (seed 003).
//!
//! Copied from the seed: `LOCK_FILENAME`, `DaemonLock` (its `Drop` removes
//! the file), `lock_file_path_for_dir`, `pid_alive`, `read_lock_pid`,
//! `write_lock_file` (`{path}.tmp`-style temp + fsync + rename),
//! `try_create_lock_exclusive` (O_CREAT|O_EXCL) and `acquire_lock` (own pid
//! may retake; a live other pid is "already running"). anyhow as in the
//! seed; `tracing::info!` is dropped; `lock_file_path` (needs
//! `trusty_common::resolve_data_dir`) is not needed here.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

use crate::util::{self, failed, Failure, Outcome};

pub const LOCK_FILENAME: &str = "daemon.lock";

#[derive(Debug)]
pub struct DaemonLock {
    path: PathBuf,
}

impl DaemonLock {
    pub(crate) fn from_path(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn lock_file_path_for_dir(dir: &Path) -> PathBuf {
    dir.join(LOCK_FILENAME)
}

pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill(2) is async-signal-safe; signal 0 is liveness-only.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc == 0 {
        return true;
    }
    let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    err != libc::ESRCH // EPERM → exists but no permission → alive
}

pub fn read_lock_pid(path: &Path) -> Result<Option<u32>> {
    let raw = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("read lock file {}", path.display())));
        }
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    Ok(trimmed.parse::<u32>().ok()) // malformed → None
}

fn write_lock_file(path: &Path, pid: u32) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("lock.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn try_create_lock_exclusive(path: &Path, pid: u32) -> std::io::Result<bool> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL
        .open(path)
    {
        Ok(mut f) => {
            writeln!(f, "{pid}")?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn acquire_lock(path: &Path) -> Result<DaemonLock> {
    let me = std::process::id();

    // Phase 1: O_EXCL — race-free when the file is absent.
    match try_create_lock_exclusive(path, me) {
        Ok(true) => {
            return Ok(DaemonLock::from_path(path.to_path_buf()));
        }
        Ok(false) => {} // File existed; fall through to Phase 2.
        Err(e) => {
            return Err(anyhow::anyhow!(
                "create daemon lock {}: {e}",
                path.display()
            ));
        }
    }

    // Phase 2: file exists — read the recorded PID and decide.
    if let Some(existing_pid) = read_lock_pid(path)? {
        if existing_pid != me && pid_alive(existing_pid) {
            bail!(
                "trusty-memory daemon is already running as PID {existing_pid} \
                 (lock file: {}). \
                 If you believe this is a stale lock, remove it manually: \
                 rm {:?}",
                path.display(),
                path
            );
        }
    }
    write_lock_file(path, me)
        .map_err(|e| anyhow::anyhow!("write daemon lock {}: {e}", path.display()))?;
    Ok(DaemonLock::from_path(path.to_path_buf()))
}

// ─── Command line ─────────────────────────────────────────────────────────────

const VERBS: &str = "seedio trusty write <daemon.lock> <pid>      (write_lock_file: what a reclaim writes)
seedio trusty acquire <daemon.lock>          (acquire_lock, then drop the guard: the file is removed)
seedio trusty hold <daemon.lock>             (acquire_lock; print \"ready <pid>\"; drop at stdin EOF)
seedio trusty check <daemon.lock> <pid|none> (read_lock_pid)";

/// acquire_lock's refusal is the seed's "already running" error; anything
/// else is a failure.
fn acquire(path: &Path) -> Result<DaemonLock, Failure> {
    acquire_lock(path).map_err(|e| {
        let message = format!("{e:#}");
        if message.contains("already running") {
            Failure::Refused(message)
        } else {
            Failure::Failed(message)
        }
    })
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    match verb {
        "write" => {
            util::want(rest, 2, VERBS)?;
            let pid: u32 = util::number_arg("pid", &rest[1])?;
            write_lock_file(Path::new(&rest[0]), pid).map_err(failed("write_lock_file"))
        }
        "acquire" => {
            util::want(rest, 1, VERBS)?;
            let guard = acquire(Path::new(&rest[0]))?;
            drop(guard);
            Ok(())
        }
        // The daemon's life: hold the lock until told to stop (stdin closes),
        // then leave as the daemon does, the guard removing the file.
        "hold" => {
            util::want(rest, 1, VERBS)?;
            let guard = acquire(Path::new(&rest[0]))?;
            println!("ready {}", std::process::id());
            use std::io::{Read, Write};
            std::io::stdout().flush().map_err(failed("flush stdout"))?;
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            drop(guard);
            Ok(())
        }
        "check" => {
            util::want(rest, 2, VERBS)?;
            let expected: Option<u32> = if rest[1] == "none" {
                None
            } else {
                Some(util::number_arg("pid", &rest[1])?)
            };
            let actual = read_lock_pid(Path::new(&rest[0])).map_err(|e| Failure::Failed(format!("{e:#}")))?;
            util::expect_eq("read_lock_pid", &actual, &expected)
        }
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
