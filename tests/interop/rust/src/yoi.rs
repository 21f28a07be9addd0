//! yoi's pod registry (seed 001, `yoi/crates/pod-registry/src/mutate.rs`).
//!
//! Copied from the seed: `release_pod`, `reclaim_stale`, `reclaim_stale_with`,
//! `pid_alive`, and the allocation-building and save steps of
//! `register_pod_with_deny` and `delegate_scope`.
//!
//! Filled in (the seed file leaves them out, in `table.rs`, `manifest` and
//! `session_store`): `Allocation` with the fields the seed constructs
//! (`pod_name, pid, socket, scope_allow, scope_deny, delegated_from,
//! segment_id`), `ScopeRule {target, permission, recursive}` with permission
//! spelled "read"/"write" (the format docs/example-yoi.md documents),
//! `SegmentId` as a UUID, the table `{"allocations": [...]}` and a
//! `LockFileGuard` that holds an exclusive flock on `pods.lock` beside
//! `pods.json`, loads the table (a missing file is empty, a corrupt one an
//! error) and saves it by temp file + fsync + rename. Plain serde derives, no
//! deny_unknown_fields; `scope_deny` is `#[serde(default)]` (read as empty
//! when absent), `delegated_from` / `segment_id` are `Option` (absent or null
//! is `None`).
//!
//! `register_pod_with_deny` is the seed's whole function, its write-conflict
//! loop included (the deny rules excuse a rule's conflicts only when every
//! competitor's rule is fully covered by one of them). The two functions
//! that loop calls live in yoi's `conflict.rs`, which the seed does not
//! contain, and are RECONSTRUCTED here from the seed's tests and comments,
//! with exactly the reading procreg's preset documents
//! (include/procreg/presets/yoi/scope.hpp, docs/example-yoi.md):
//! `covers_fully(cover, inner)` (cover's coverage contains inner's, its
//! permission at least inner's) and `find_conflict_owners(table, rule,
//! exempt)` (every write allow rule of another pod through which that pod's
//! effective write scope, i.e. its write rules minus its write deny rules
//! minus its children's write rules, meets `rule`; deepest pod in the
//! delegation tree first, then table order). A rule covers its target and
//! everything below it when recursive, else its target and direct children;
//! paths compare by components.
//!
//! Left out: the delegation-authority check of `delegate_scope` (it lives in
//! yoi's `manifest`, which the seed does not contain).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::util::{self, failed, Failure, Outcome};

// ─── Filled in: manifest::{ScopeRule, Permission}, session_store::SegmentId ──

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeRule {
    pub target: PathBuf,
    pub permission: Permission,
    pub recursive: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SegmentId(pub uuid::Uuid);

// ─── Filled in: table::{Allocation, AllocationTable, LockFileGuard} ──────────

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allocation {
    pub pod_name: String,
    pub pid: u32,
    pub socket: PathBuf,
    pub scope_allow: Vec<ScopeRule>,
    #[serde(default)]
    pub scope_deny: Vec<ScopeRule>,
    pub delegated_from: Option<String>,
    pub segment_id: Option<SegmentId>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AllocationTable {
    pub allocations: Vec<Allocation>,
}

impl AllocationTable {
    pub fn find(&self, pod_name: &str) -> Option<&Allocation> {
        self.allocations.iter().find(|a| a.pod_name == pod_name)
    }

    pub fn find_mut(&mut self, pod_name: &str) -> Option<&mut Allocation> {
        self.allocations.iter_mut().find(|a| a.pod_name == pod_name)
    }

    pub fn find_by_segment(&self, segment_id: SegmentId) -> Option<&Allocation> {
        self.allocations
            .iter()
            .find(|a| a.segment_id == Some(segment_id))
    }
}

/// Holds the registry's lock file for as long as it lives.
pub struct LockFileGuard {
    _lock: File,
    path: PathBuf,
    data: AllocationTable,
}

impl LockFileGuard {
    /// Locks `pods.lock` beside `path` (flock, exclusive), then loads `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .open(path.with_extension("lock"))?;
        lock.lock_exclusive()?;
        let data = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => AllocationTable::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            _lock: lock,
            path: path.to_path_buf(),
            data,
        })
    }

    pub fn data(&self) -> &AllocationTable {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut AllocationTable {
        &mut self.data
    }

    /// Replaces the table file: temp file in the same directory, fsync, rename.
    pub fn save(&self) -> io::Result<()> {
        let text = serde_json::to_string_pretty(&self.data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

// ─── Filled in: error::ScopeLockError (the variants these paths raise) ───────

#[derive(Debug, thiserror::Error)]
pub enum ScopeLockError {
    #[error("pod name {0:?} is already registered")]
    DuplicatePodName(String),
    #[error("unknown pod {0:?}")]
    UnknownPod(String),
    #[error("segment {segment_id:?} is held by pod {pod_name:?} ({socket:?})")]
    SegmentConflict {
        segment_id: SegmentId,
        pod_name: String,
        socket: PathBuf,
    },
    #[error("pod wants {rule:?}, which conflicts with pod {competitor:?} holding {competitor_rule:?}")]
    WriteConflict {
        competitor: String,
        rule: ScopeRule,
        competitor_rule: ScopeRule,
    },
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

// ─── Reconstructed: conflict.rs (see the module comment) ────────────────────

/// The shapes a coverage, or an intersection of coverages, can take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Subtree,
    Shallow,
    Single,
}

#[derive(Clone)]
struct Region {
    at: Vec<String>,
    kind: Shape,
}

fn components(path: &Path) -> Vec<String> {
    path.to_string_lossy()
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

fn region_of(rule: &ScopeRule) -> Region {
    Region {
        at: components(&rule.target),
        kind: if rule.recursive { Shape::Subtree } else { Shape::Shallow },
    }
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

fn is_parent(parent: &[String], child: &[String]) -> bool {
    child.len() == parent.len() + 1 && is_prefix(parent, child)
}

fn contains_point(r: &Region, q: &[String]) -> bool {
    match r.kind {
        Shape::Subtree => is_prefix(&r.at, q),
        Shape::Shallow => r.at == q || is_parent(&r.at, q),
        Shape::Single => r.at == q,
    }
}

fn intersect(a: &Region, b: &Region) -> Option<Region> {
    if a.kind == Shape::Single {
        return if contains_point(b, &a.at) { Some(a.clone()) } else { None };
    }
    if b.kind == Shape::Single {
        return if contains_point(a, &b.at) { Some(b.clone()) } else { None };
    }
    if a.kind == Shape::Subtree && b.kind == Shape::Subtree {
        if is_prefix(&a.at, &b.at) {
            return Some(b.clone());
        }
        if is_prefix(&b.at, &a.at) {
            return Some(a.clone());
        }
        return None;
    }
    let single = |at: &Vec<String>| Region { at: at.clone(), kind: Shape::Single };
    if a.kind == Shape::Shallow && b.kind == Shape::Shallow {
        if a.at == b.at {
            return Some(a.clone());
        }
        if is_parent(&a.at, &b.at) {
            return Some(single(&b.at));
        }
        if is_parent(&b.at, &a.at) {
            return Some(single(&a.at));
        }
        return None;
    }
    let (deep, shallow) = if a.kind == Shape::Subtree { (a, b) } else { (b, a) };
    if is_prefix(&deep.at, &shallow.at) {
        return Some(shallow.clone());
    }
    if is_parent(&shallow.at, &deep.at) {
        return Some(single(&deep.at));
    }
    None
}

fn covered_by(x: &Region, cover: &[Region]) -> bool {
    let subtree_above = |c: &Region| c.kind == Shape::Subtree && is_prefix(&c.at, &x.at);
    match x.kind {
        Shape::Single => cover.iter().any(|c| contains_point(c, &x.at)),
        Shape::Shallow => {
            cover.iter().any(|c| contains_point(c, &x.at))
                && cover
                    .iter()
                    .any(|c| subtree_above(c) || (c.kind == Shape::Shallow && c.at == x.at))
        }
        Shape::Subtree => cover.iter().any(subtree_above),
    }
}

fn write_regions(rules: &[ScopeRule]) -> Vec<Region> {
    rules
        .iter()
        .filter(|r| r.permission == Permission::Write)
        .map(region_of)
        .collect()
}

pub fn covers_fully(cover: &ScopeRule, inner: &ScopeRule) -> bool {
    if cover.permission == Permission::Read && inner.permission == Permission::Write {
        return false;
    }
    covered_by(&region_of(inner), &[region_of(cover)])
}

pub struct ConflictOwner {
    pub pod_name: String,
    pub rule: ScopeRule,
}

pub fn find_conflict_owners(
    table: &AllocationTable,
    rule: &ScopeRule,
    exempt: Option<&str>,
) -> Vec<ConflictOwner> {
    if rule.permission != Permission::Write {
        return Vec::new();
    }
    let wanted = region_of(rule);
    let pods = &table.allocations;
    let depth = |pod: &Allocation| {
        let mut at = pod;
        let mut steps = 0;
        while steps < pods.len() {
            let parent = match at.delegated_from.as_deref().and_then(|p| table.find(p)) {
                Some(parent) => parent,
                None => break,
            };
            at = parent;
            steps += 1;
        }
        steps
    };
    let mut hits: Vec<(usize, ConflictOwner)> = Vec::new();
    for pod in pods {
        if exempt == Some(pod.pod_name.as_str()) {
            continue;
        }
        let mut subtracted = write_regions(&pod.scope_deny);
        for child in pods {
            if child.pod_name != pod.pod_name
                && child.delegated_from.as_deref() == Some(pod.pod_name.as_str())
            {
                subtracted.extend(write_regions(&child.scope_allow));
            }
        }
        for own in pod.scope_allow.iter().filter(|r| r.permission == Permission::Write) {
            if let Some(shared) = intersect(&region_of(own), &wanted) {
                if !covered_by(&shared, &subtracted) {
                    hits.push((
                        depth(pod),
                        ConflictOwner {
                            pod_name: pod.pod_name.clone(),
                            rule: own.clone(),
                        },
                    ));
                }
            }
        }
    }
    hits.sort_by(|a, b| b.0.cmp(&a.0)); // stable: deepest first, then table order
    hits.into_iter().map(|(_, owner)| owner).collect()
}

// ─── Seed: mutate.rs ──────────────────────────────────────────────────────────

/// The seed's `register_pod_with_deny`, whole (conflict helpers reconstructed
/// above): reclaim stale (saved at once), refuse a taken name or segment,
/// refuse a write conflict the deny rules do not excuse, push, save.
pub fn register_pod_with_deny(
    guard: &mut LockFileGuard,
    pod_name: String,
    pid: u32,
    socket: PathBuf,
    scope_allow: Vec<ScopeRule>,
    scope_deny: Vec<ScopeRule>,
    segment_id: SegmentId,
) -> Result<(), ScopeLockError> {
    reclaim_stale(guard);
    if guard.data().find(&pod_name).is_some() {
        return Err(ScopeLockError::DuplicatePodName(pod_name));
    }
    if let Some(existing) = guard.data().find_by_segment(segment_id) {
        return Err(ScopeLockError::SegmentConflict {
            segment_id,
            pod_name: existing.pod_name.clone(),
            socket: existing.socket.clone(),
        });
    }
    for rule in scope_allow
        .iter()
        .filter(|r| r.permission == Permission::Write)
    {
        let conflicts = find_conflict_owners(guard.data(), rule, None);
        let all_denied = !conflicts.is_empty()
            && conflicts.iter().all(|owner| {
                scope_deny
                    .iter()
                    .filter(|r| r.permission == Permission::Write)
                    .any(|deny| covers_fully(deny, &owner.rule))
            });
        if all_denied {
            continue;
        }
        if let Some(competitor) = conflicts.into_iter().next() {
            return Err(ScopeLockError::WriteConflict {
                competitor: competitor.pod_name,
                rule: rule.clone(),
                competitor_rule: competitor.rule,
            });
        }
    }
    guard.data_mut().allocations.push(Allocation {
        pod_name,
        pid,
        socket,
        scope_allow,
        scope_deny,
        delegated_from: None,
        segment_id: Some(segment_id),
    });
    guard.save()?;
    Ok(())
}

/// `delegate_scope` without the authority and conflict checks (see the
/// module comment): the spawned pod is a pre-reservation with no segment.
pub fn delegate_scope(
    guard: &mut LockFileGuard,
    spawner: &str,
    spawned: String,
    pid: u32,
    socket: PathBuf,
    scope_allow: Vec<ScopeRule>,
) -> Result<(), ScopeLockError> {
    reclaim_stale(guard);
    if guard.data().find(&spawned).is_some() {
        return Err(ScopeLockError::DuplicatePodName(spawned));
    }
    if guard.data().find(spawner).is_none() {
        return Err(ScopeLockError::UnknownPod(spawner.into()));
    }
    guard.data_mut().allocations.push(Allocation {
        pod_name: spawned,
        pid,
        socket,
        scope_allow,
        scope_deny: Vec::new(),
        delegated_from: Some(spawner.into()),
        segment_id: None,
    });
    guard.save()?;
    Ok(())
}

pub fn release_pod(guard: &mut LockFileGuard, pod_name: &str) -> Result<(), ScopeLockError> {
    let idx = guard
        .data()
        .allocations
        .iter()
        .position(|a| a.pod_name == pod_name);
    let idx = match idx {
        Some(idx) => idx,
        None => return Err(ScopeLockError::UnknownPod(pod_name.into())),
    };
    let removed = guard.data().allocations[idx].clone();
    for alloc in guard.data_mut().allocations.iter_mut() {
        if alloc.delegated_from.as_deref() == Some(pod_name) {
            alloc.delegated_from.clone_from(&removed.delegated_from);
        }
    }
    guard.data_mut().allocations.remove(idx);
    guard.save()?;
    Ok(())
}

pub fn reclaim_stale(guard: &mut LockFileGuard) {
    reclaim_stale_with(guard, pid_alive);
}

pub fn reclaim_stale_with(guard: &mut LockFileGuard, mut is_alive: impl FnMut(u32) -> bool) {
    let dead: Vec<String> = guard
        .data()
        .allocations
        .iter()
        .filter(|a| !is_alive(a.pid))
        .map(|a| a.pod_name.clone())
        .collect();
    if dead.is_empty() {
        return;
    }
    for name in &dead {
        let idx = match guard
            .data()
            .allocations
            .iter()
            .position(|a| a.pod_name == *name)
        {
            Some(idx) => idx,
            None => continue,
        };
        let removed = guard.data().allocations[idx].clone();
        for alloc in guard.data_mut().allocations.iter_mut() {
            if alloc.delegated_from.as_deref() == Some(name.as_str()) {
                alloc.delegated_from.clone_from(&removed.delegated_from);
            }
        }
        guard.data_mut().allocations.remove(idx);
    }
    let _ = guard.save();
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let ret = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if ret == 0 {
        return true;
    }
    io::Error::last_os_error()
        .raw_os_error()
        .map(|e| e != libc::ESRCH)
        .unwrap_or(false)
}

// ─── Command line ─────────────────────────────────────────────────────────────

const VERBS: &str = "seedio yoi write <pods.json> <allocation JSON>   (register_pod_with_deny; needs segment_id)
seedio yoi delegate <pods.json> <allocation JSON>  (delegate_scope from its delegated_from)
seedio yoi release <pods.json> <pod>
seedio yoi reclaim-stale <pods.json>
seedio yoi check <pods.json> <expected {\"allocations\":[...]}>
seedio yoi dump <pods.json>";

fn scope_failure(e: ScopeLockError) -> Failure {
    match e {
        ScopeLockError::Io(_) => Failure::Failed(e.to_string()),
        _ => Failure::Refused(e.to_string()),
    }
}

fn open_guard(path: &str) -> Result<LockFileGuard, Failure> {
    LockFileGuard::open(Path::new(path)).map_err(failed("open"))
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    match verb {
        "write" => {
            util::want(rest, 2, VERBS)?;
            let a: Allocation = util::from_json_arg("allocation", &rest[1])?;
            let segment = a
                .segment_id
                .ok_or_else(|| Failure::Usage("write needs a segment_id".into()))?;
            let mut guard = open_guard(&rest[0])?;
            register_pod_with_deny(
                &mut guard,
                a.pod_name,
                a.pid,
                a.socket,
                a.scope_allow,
                a.scope_deny,
                segment,
            )
            .map_err(scope_failure)
        }
        "delegate" => {
            util::want(rest, 2, VERBS)?;
            let a: Allocation = util::from_json_arg("allocation", &rest[1])?;
            let spawner = a
                .delegated_from
                .ok_or_else(|| Failure::Usage("delegate needs delegated_from".into()))?;
            let mut guard = open_guard(&rest[0])?;
            delegate_scope(&mut guard, &spawner, a.pod_name, a.pid, a.socket, a.scope_allow)
                .map_err(scope_failure)
        }
        "release" => {
            util::want(rest, 2, VERBS)?;
            let mut guard = open_guard(&rest[0])?;
            release_pod(&mut guard, &rest[1]).map_err(scope_failure)
        }
        "reclaim-stale" => {
            util::want(rest, 1, VERBS)?;
            let mut guard = open_guard(&rest[0])?;
            reclaim_stale(&mut guard);
            Ok(())
        }
        "check" => {
            util::want(rest, 2, VERBS)?;
            let expected: AllocationTable = util::from_json_arg("expected", &rest[1])?;
            let guard = open_guard(&rest[0])?;
            util::expect_eq("allocation table", guard.data(), &expected)
        }
        "dump" => {
            util::want(rest, 1, VERBS)?;
            let guard = open_guard(&rest[0])?;
            util::print_json(guard.data())
        }
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
