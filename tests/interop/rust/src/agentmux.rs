//! AgentMux's named-agent registry (seed 004, `agentmux_srv/registry/store.rs`).
//!
//! Copied from the seed: `RegistryError`, `Registry` with `open`, `upsert`
//! (merge into the existing file, keeping unknown top-level and `data`
//! fields; never overwrite a file that does not parse, lacks
//! `schema_version` or has a newer one), `retire`, `unretire`, `hard_delete`,
//! `exists`, `exists_anywhere`, `list_active` (skips invalid files),
//! `read_and_validate`, `to_pretty`, `merge_for_write`, `merge_known`.
//!
//! Filled in (the seed file imports them from `schema.rs` and `atomic.rs`):
//! `NamedAgentRecord {schema_version, data}` with `data` holding the fields
//! procreg's preset knows (`instance_id`, and optional `name`,
//! `display_name`, `working_dir`, `last_launched_at_ms`), plain serde
//! derives; `MAX_SUPPORTED_SCHEMA = 1`; `validate` (instance_id equals the
//! file stem, schema_version at most the maximum: the preset's reading, as
//! the seed's merge_for_write treats every version up to it as writable); `write_atomic`
//! (temp file in the same directory, fsync, rename) and `rename_atomic`
//! (rename). A skipped upsert is reported on stderr where the seed calls
//! `tracing::warn!`, so the test can see it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::util::{self, Failure, Outcome};

// ─── Filled in: schema.rs ────────────────────────────────────────────────────

pub const MAX_SUPPORTED_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentData {
    pub instance_id: String,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub working_dir: Option<String>,
    pub last_launched_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedAgentRecord {
    pub schema_version: u32,
    pub data: AgentData,
}

#[derive(Debug, Error)]
pub enum ValidationError {
    #[error("instance_id {instance_id:?} does not match file stem {stem:?}")]
    StemMismatch { stem: String, instance_id: String },
    #[error("unsupported schema_version {0}")]
    Schema(u32),
}

pub fn validate(stem: &str, rec: &NamedAgentRecord) -> Result<(), ValidationError> {
    if rec.schema_version > MAX_SUPPORTED_SCHEMA {
        return Err(ValidationError::Schema(rec.schema_version));
    }
    if rec.data.instance_id != stem {
        return Err(ValidationError::StemMismatch {
            stem: stem.to_string(),
            instance_id: rec.data.instance_id.clone(),
        });
    }
    Ok(())
}

// ─── Filled in: atomic.rs ────────────────────────────────────────────────────

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn rename_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)
}

// ─── Seed: store.rs ──────────────────────────────────────────────────────────

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("validation: {0}")]
    Validation(#[from] ValidationError),
}

pub struct Registry {
    root: PathBuf,
    write_lock: Mutex<()>,
}

impl Registry {
    pub fn open(root: PathBuf) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(root.join("retired"))?;
        Ok(Self {
            root,
            write_lock: Mutex::new(()),
        })
    }

    fn active_path(&self, instance_id: &str) -> PathBuf {
        self.root.join(format!("{instance_id}.json"))
    }

    fn retired_path(&self, instance_id: &str) -> PathBuf {
        self.root.join("retired").join(format!("{instance_id}.json"))
    }

    pub fn upsert(&self, rec: &NamedAgentRecord) -> Result<(), RegistryError> {
        let _g = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.active_path(&rec.data.instance_id);
        let bytes = match std::fs::read(&path) {
            Ok(existing) => match merge_for_write(&existing, rec)? {
                Some(b) => b,
                None => return Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => to_pretty(rec)?,
            Err(e) => return Err(e.into()),
        };
        write_atomic(&path, &bytes)?;
        Ok(())
    }

    pub fn retire(&self, instance_id: &str) -> Result<(), RegistryError> {
        let _g = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.active_path(instance_id);
        if !from.exists() {
            return Ok(());
        }
        rename_atomic(&from, &self.retired_path(instance_id))?;
        Ok(())
    }

    pub fn unretire(&self, instance_id: &str) -> Result<(), RegistryError> {
        let _g = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.retired_path(instance_id);
        if !from.exists() {
            return Ok(());
        }
        rename_atomic(&from, &self.active_path(instance_id))?;
        Ok(())
    }

    pub fn hard_delete(&self, instance_id: &str) -> Result<(), RegistryError> {
        let _g = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        for p in [self.active_path(instance_id), self.retired_path(instance_id)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn exists(&self, instance_id: &str) -> bool {
        self.active_path(instance_id).exists()
    }

    pub fn exists_anywhere(&self, instance_id: &str) -> bool {
        self.active_path(instance_id).exists() || self.retired_path(instance_id).exists()
    }

    pub fn list_active(&self) -> Result<Vec<NamedAgentRecord>, RegistryError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let stem = match path.file_stem().and_then(|s| s.to_str()) {
                Some(stem) => stem,
                None => continue,
            };
            if path.extension().and_then(|s| s.to_str()) != Some("json") {
                continue;
            }
            match read_and_validate(&path, stem) {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    eprintln!("registry: skipping invalid record {}: {e}", path.display());
                }
            }
        }
        Ok(out)
    }
}

fn read_and_validate(path: &Path, stem: &str) -> Result<NamedAgentRecord, RegistryError> {
    let bytes = std::fs::read(path)?;
    let rec: NamedAgentRecord = serde_json::from_slice(&bytes)?;
    validate(stem, &rec)?;
    Ok(rec)
}

fn to_pretty(rec: &NamedAgentRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(rec)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn merge_for_write(
    existing: &[u8],
    rec: &NamedAgentRecord,
) -> Result<Option<Vec<u8>>, RegistryError> {
    let on_disk: Value = match serde_json::from_slice(existing) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("registry: skipped: existing file is unparseable JSON ({e}) — refusing to overwrite");
            return Ok(None);
        }
    };
    let on_disk_version = on_disk
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    match on_disk_version {
        Some(v) if v > MAX_SUPPORTED_SCHEMA => {
            eprintln!("registry: skipped: on-disk schema_version {v} > writer max {MAX_SUPPORTED_SCHEMA} — refusing downgrade");
            return Ok(None);
        }
        Some(_) => {}
        None => {
            eprintln!("registry: skipped: existing file lacks schema_version — refusing to overwrite");
            return Ok(None);
        }
    }
    let mut merged = on_disk;
    let updates = serde_json::to_value(rec)?;
    merge_known(&mut merged, &updates);
    let mut bytes = serde_json::to_vec_pretty(&merged)?;
    bytes.push(b'\n');
    Ok(Some(bytes))
}

fn merge_known(target: &mut Value, updates: &Value) {
    let (t, u) = match (target.as_object_mut(), updates.as_object()) {
        (Some(t), Some(u)) => (t, u),
        _ => {
            *target = updates.clone();
            return;
        }
    };
    for (k, v) in u {
        if k == "data" {
            if let Some(t_data) = t.get_mut("data") {
                merge_known(t_data, v);
                continue;
            }
        }
        t.insert(k.clone(), v.clone());
    }
}

// ─── Command line ─────────────────────────────────────────────────────────────

const VERBS: &str = "seedio agentmux write <root> <NamedAgentRecord JSON>   (upsert)
seedio agentmux retire|unretire|hard-delete <root> <instance_id>
seedio agentmux exists <root> <instance_id> <active|retired|none>
seedio agentmux check <root> <expected [NamedAgentRecord...]>       (list_active, any order)";

fn registry_failure(e: RegistryError) -> Failure {
    Failure::Failed(e.to_string())
}

pub fn run(args: &[String]) -> Outcome {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = if args.is_empty() { args } else { &args[1..] };
    let open = |root: &str| Registry::open(PathBuf::from(root)).map_err(registry_failure);
    match verb {
        "write" => {
            util::want(rest, 2, VERBS)?;
            let rec: NamedAgentRecord = util::from_json_arg("record", &rest[1])?;
            open(&rest[0])?.upsert(&rec).map_err(registry_failure)
        }
        "retire" => {
            util::want(rest, 2, VERBS)?;
            open(&rest[0])?.retire(&rest[1]).map_err(registry_failure)
        }
        "unretire" => {
            util::want(rest, 2, VERBS)?;
            open(&rest[0])?.unretire(&rest[1]).map_err(registry_failure)
        }
        "hard-delete" => {
            util::want(rest, 2, VERBS)?;
            open(&rest[0])?.hard_delete(&rest[1]).map_err(registry_failure)
        }
        "exists" => {
            util::want(rest, 3, VERBS)?;
            let reg = open(&rest[0])?;
            let actual = if reg.exists(&rest[1]) {
                "active"
            } else if reg.exists_anywhere(&rest[1]) {
                "retired"
            } else {
                "none"
            };
            util::expect_eq("where the record is", &actual, &rest[2].as_str())
        }
        "check" => {
            util::want(rest, 2, VERBS)?;
            let mut expected: Vec<NamedAgentRecord> = util::from_json_arg("expected", &rest[1])?;
            let mut actual = open(&rest[0])?.list_active().map_err(registry_failure)?;
            expected.sort_by(|a, b| a.data.instance_id.cmp(&b.data.instance_id));
            actual.sort_by(|a, b| a.data.instance_id.cmp(&b.data.instance_id));
            util::expect_eq("active records", &actual, &expected)
        }
        _ => Err(Failure::Usage(format!("usage:\n{VERBS}"))),
    }
}
