//! The seed as a contender in procreg's benchmarks (issue 17): algocline's
//! registry operations, driven by bench/procreg_bench.cpp (single writer) and
//! bench/turns.cpp (processes taking turns), through the seed's own code
//! paths only: `with_registry_lock` around `PoolRegistry::load_or_default`,
//! `add` / `remove` / `find` / `scan_and_gc` and `save` (module algocline).
//! Nothing here reads or writes the file any other way.
//!
//! What each benchmark operation is in the seed:
//!
//! - insert: lock, load, add, save (algocline's registration of a worker);
//! - erase: lock, load, remove, save;
//! - find: lock, load, find (read only: no save);
//! - list and reap: lock, load, scan_and_gc, save. The seed has no other way
//!   to enumerate its sessions: scan_and_gc returns the survivors, and its
//!   crux rule is that a mutation (the pruning) is saved before the lock is
//!   dropped. So the seed's `list` is its `reap`.
//!
//! Times are measured here, with `Instant` (CLOCK_MONOTONIC), from when the
//! request (or the token) has been read until the operation returned: the
//! pipe round trip to the C++ driver is not part of the figure. `ring` also
//! reports each turn's CPU time (CLOCK_THREAD_CPUTIME_ID) and, at its end,
//! the process's peak RSS (VmHWM): `done <index> <turns> <KiB> <wall µs> <CPU µs> ...`.
//!
//!     seedio bench serve <registry.json>
//!     seedio bench ring <registry.json> <op> <index> <procs> <total> <n> <owner-pid>
//!                       <in-fd> <out-fd> <finish-fd> <report-fd>

use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::algocline::{with_registry_lock, PoolError, PoolRegistry, PoolSessionEntry};
use crate::util::{self, failed, Failure, Outcome};

const VERBS: &str = "seedio bench serve <registry.json>
    (stdin, one request a line: prefill <prefix> <from> <count> <pid> | insert <sid> <pid> |
     erase <sid> | find <sid> | list | reap; each answered on stdout with
     `ok <microseconds> <count>` or `err <message>`)
seedio bench ring <registry.json> <insert|erase|find|list|reap> <index> <procs> <total> <n> <owner-pid> <in-fd> <out-fd> <finish-fd> <report-fd>";

/// A pid above Linux's PID_MAX_LIMIT: kill(2) answers ESRCH, so scan_and_gc prunes it.
const DEAD_PID: u32 = 0x3fff_ffff;

/// The key of the i-th record of a kind, as bench/backends.hpp's key_for writes it.
fn key(prefix: &str, i: u64) -> String {
    format!("{}-{:010}", prefix, i)
}

/// An entry shaped as the benchmark's records (created_at stamped by the seed's `new`).
fn entry(sid: String, pid: u32) -> PoolSessionEntry {
    let sock = PathBuf::from(format!("/run/user/1000/algocline/pool/{sid}.sock"));
    PoolSessionEntry::new(sid, pid, sock, "0.30.0")
}

/// `registry.lock` beside `registry.json`, as algocline names it.
fn lock_path(registry: &Path) -> PathBuf {
    registry.with_file_name("registry.lock")
}

// ─── The seed's transactions ─────────────────────────────────────────────────

fn insert(path: &Path, e: PoolSessionEntry) -> Result<usize, PoolError> {
    with_registry_lock(&lock_path(path), || {
        let mut reg = PoolRegistry::load_or_default(path)?;
        reg.add(e);
        reg.save(path)?;
        Ok(reg.sessions.len())
    })
}

fn insert_many(path: &Path, entries: Vec<PoolSessionEntry>) -> Result<usize, PoolError> {
    with_registry_lock(&lock_path(path), || {
        let mut reg = PoolRegistry::load_or_default(path)?;
        for e in entries {
            reg.add(e);
        }
        reg.save(path)?;
        Ok(reg.sessions.len())
    })
}

/// Returns whether `sid` was there.
fn erase(path: &Path, sid: &str) -> Result<bool, PoolError> {
    with_registry_lock(&lock_path(path), || {
        let mut reg = PoolRegistry::load_or_default(path)?;
        let removed = reg.remove(sid);
        reg.save(path)?;
        Ok(removed)
    })
}

fn find(path: &Path, sid: &str) -> Result<bool, PoolError> {
    with_registry_lock(&lock_path(path), || {
        let reg = PoolRegistry::load_or_default(path)?;
        Ok(reg.find(sid).is_some())
    })
}

/// scan_and_gc, saved: (survivors, pruned).
fn scan(path: &Path) -> Result<(usize, usize), PoolError> {
    with_registry_lock(&lock_path(path), || {
        let mut reg = PoolRegistry::load_or_default(path)?;
        let before = reg.sessions.len();
        let survivors = reg.scan_and_gc()?;
        reg.save(path)?;
        Ok((survivors.len(), before - survivors.len()))
    })
}

/// One transaction: remove `old`, add `new`, save. Returns whether `old` was there.
fn replace(path: &Path, old: &str, new: PoolSessionEntry) -> Result<bool, PoolError> {
    with_registry_lock(&lock_path(path), || {
        let mut reg = PoolRegistry::load_or_default(path)?;
        let removed = reg.remove(old);
        reg.add(new);
        reg.save(path)?;
        Ok(removed)
    })
}

fn pool_failed(e: PoolError) -> Failure {
    Failure::Failed(e.to_string())
}

// ─── serve: one request a line ───────────────────────────────────────────────

/// Runs one request; Ok((microseconds, count)).
fn serve_one(path: &Path, words: &[&str]) -> Result<(f64, usize), String> {
    let number = |i: usize| -> Result<u64, String> {
        words
            .get(i)
            .ok_or_else(|| format!("{} needs more arguments", words[0]))?
            .parse::<u64>()
            .map_err(|e| format!("{}: {e}", words[0]))
    };
    let word = |i: usize| -> Result<String, String> {
        words.get(i).map(|s| s.to_string()).ok_or_else(|| format!("{} needs more arguments", words[0]))
    };
    let err = |e: PoolError| e.to_string();
    match words[0] {
        "prefill" => {
            let prefix = word(1)?;
            let (from, count, pid) = (number(2)?, number(3)?, number(4)? as u32);
            let entries: Vec<_> = (from..from + count).map(|i| entry(key(&prefix, i), pid)).collect();
            let len = insert_many(path, entries).map_err(err)?;
            Ok((0.0, len))
        }
        "insert" => {
            let e = entry(word(1)?, number(2)? as u32);
            let t0 = Instant::now();
            let len = insert(path, e).map_err(err)?;
            Ok((t0.elapsed().as_secs_f64() * 1e6, len))
        }
        "erase" => {
            let sid = word(1)?;
            let t0 = Instant::now();
            let removed = erase(path, &sid).map_err(err)?;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            if removed {
                Ok((us, 1))
            } else {
                Err(format!("erase: no session {sid}"))
            }
        }
        "find" => {
            let sid = word(1)?;
            let t0 = Instant::now();
            let found = find(path, &sid).map_err(err)?;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            if found {
                Ok((us, 1))
            } else {
                Err(format!("find: no session {sid}"))
            }
        }
        "list" | "reap" => {
            let t0 = Instant::now();
            let (survivors, pruned) = scan(path).map_err(err)?;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            Ok((us, if words[0] == "list" { survivors } else { pruned }))
        }
        other => Err(format!("unknown request {other:?}")),
    }
}

fn serve(path: &Path) -> Outcome {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(failed("stdin"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let answer = match serve_one(path, &words) {
            Ok((us, count)) => format!("ok {us:.3} {count}\n"),
            Err(message) => format!("err {}\n", message.replace('\n', " ")),
        };
        out.write_all(answer.as_bytes()).map_err(failed("stdout"))?;
        out.flush().map_err(failed("stdout"))?;
    }
    Ok(())
}

// ─── ring: strict turns with other processes ─────────────────────────────────

/// This thread's CPU time in microseconds (CLOCK_THREAD_CPUTIME_ID): on a
/// shared machine, what the operation itself cost, without the waits.
fn cpu_us() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// This process's peak resident set (VmHWM in /proc/self/status), in KiB; -1 if unknown.
fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmHWM:") {
            let digits: String = rest.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
            return digits.parse().unwrap_or(-1);
        }
    }
    -1
}

/// One turn of the ring (bench/turns.cpp describes the protocol): the timed
/// operation of turn `t`, checked, then the untimed write that keeps the
/// table at its size (insert, erase), leaves the next process a changed
/// file where the operation wrote nothing (find, list), or something to reap
/// (reap). Returns the timed microseconds, wall and CPU.
fn ring_turn(path: &Path, op: &str, t: u64, n: u64, owner: u32) -> Result<(f64, f64), Failure> {
    let t0 = Instant::now();
    let c0 = cpu_us();
    let bad = |what: String| Failure::Failed(format!("turn {t}, {op}: {what}"));
    match op {
        "insert" => {
            insert(path, entry(key("turn", t), owner)).map_err(pool_failed)?;
        }
        "erase" => {
            if !erase(path, &key("victim", t)).map_err(pool_failed)? {
                return Err(bad(format!("no session {}", key("victim", t))));
            }
        }
        "find" => {
            let sid = key("sess", (t * 7919) % n);
            if !find(path, &sid).map_err(pool_failed)? {
                return Err(bad(format!("no session {sid}")));
            }
        }
        "list" => {
            let (survivors, _) = scan(path).map_err(pool_failed)?;
            if survivors as u64 != n + 1 {
                return Err(bad(format!("{survivors} sessions, expected {}", n + 1)));
            }
        }
        "reap" => {
            let (_, pruned) = scan(path).map_err(pool_failed)?;
            if pruned != 1 {
                return Err(bad(format!("{pruned} sessions pruned, expected 1")));
            }
        }
        _ => return Err(Failure::Usage(format!("usage: {VERBS}"))),
    }
    let us = (t0.elapsed().as_secs_f64() * 1e6, cpu_us() - c0);
    match op {
        "insert" => {
            if !erase(path, &key("turn", t)).map_err(pool_failed)? {
                return Err(bad(format!("no session {}", key("turn", t))));
            }
        }
        "erase" => {
            insert(path, entry(key("victim", t + 1), owner)).map_err(pool_failed)?;
        }
        "find" | "list" => {
            if !replace(path, &key("touch", t), entry(key("touch", t + 1), owner)).map_err(pool_failed)? {
                return Err(bad(format!("no session {}", key("touch", t))));
            }
        }
        "reap" => {
            insert(path, entry(key("dead", t + 1), DEAD_PID)).map_err(pool_failed)?;
        }
        _ => {}
    }
    Ok(us)
}

fn ring(args: &[String]) -> Outcome {
    util::want(args, 11, VERBS)?;
    let path = PathBuf::from(&args[0]);
    let op = args[1].as_str();
    let index: u64 = util::number_arg("index", &args[2])?;
    let procs: u64 = util::number_arg("procs", &args[3])?;
    let total: u64 = util::number_arg("total", &args[4])?;
    let n: u64 = util::number_arg("n", &args[5])?;
    let owner: u32 = util::number_arg("owner-pid", &args[6])?;
    let fd = |i: usize| -> Result<File, Failure> {
        let fd: i32 = util::number_arg("fd", &args[i])?;
        // SAFETY: the driver passes descriptors it opened for this process alone.
        Ok(unsafe { File::from_raw_fd(fd) })
    };
    let (mut input, mut output, mut finish, mut report) = (fd(7)?, fd(8)?, fd(9)?, fd(10)?);
    if procs == 0 || index >= procs || n == 0 {
        return Err(Failure::Usage(format!("usage: {VERBS}")));
    }
    report.write_all(b"ready\n").map_err(failed("report"))?;
    if total <= procs {
        return Err(Failure::Usage(format!("usage: {VERBS} (total must exceed procs)")));
    }
    let mut times = Vec::new();
    let mut expect = index;
    while expect < total {
        let mut token = [0u8; 8];
        input.read_exact(&mut token).map_err(failed("reading the token"))?;
        let t = u64::from_le_bytes(token);
        if t != expect {
            return Err(Failure::Failed(format!("process {index} got token {t}, expected {expect}")));
        }
        let us = ring_turn(&path, op, t, n, owner)?;
        // Turns 0 .. procs - 1 (each process's first) warm the processes up:
        // not in the figures, and the last of them tells the driver so.
        if t >= procs {
            times.push(us);
        }
        let next = (t + 1).to_le_bytes();
        if t + 1 == procs {
            finish.write_all(&next).map_err(failed("marking the warm-up's end"))?;
        }
        let to = if t + 1 == total { &mut finish } else { &mut output };
        to.write_all(&next).map_err(failed("passing the token"))?;
        expect += procs;
    }
    let mut line = format!("done {index} {} {}", times.len(), peak_rss_kib());
    for (wall, cpu) in &times {
        line += &format!(" {wall:.3} {cpu:.3}");
    }
    line += "\n";
    report.write_all(line.as_bytes()).map_err(failed("report"))
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    match verb {
        "serve" => {
            util::want(rest, 1, VERBS)?;
            serve(Path::new(&rest[0]))
        }
        "ring" => ring(rest),
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
