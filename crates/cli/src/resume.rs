//! What a checkpoint must match to be resumed: the SHA-256 of every input the run was started on
//! (the model it started from, its data) and its settings. Each checkpoint carries them as
//! `checkpoint/run.json`; a `--resume` whose inputs or settings differ is refused naming each
//! difference, so a run is never continued on other data, from another model, or with a flag it
//! would ignore. The settings a command applies to a resumed run (the iteration count) are said.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoints::{self, RUN_FILE};
use crate::files::Result;
use crate::model_dirs;

/// A model folder's files that decide what it computes (its outputs, logs and checkpoints do not).
fn is_model_file(name: &str) -> bool {
    name.ends_with(".safetensors")
        || name.ends_with(".gguf")
        || name.ends_with(".json") && name != "manifest.json"
        || name.ends_with(".jinja")
}

/// A run's inputs (by role: digest) and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub inputs: BTreeMap<String, Input>,
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub path: String,
    pub sha256: String,
}

impl RunRecord {
    /// Digests each input: a file's bytes; a model folder's model files (config, weights,
    /// tokenizer, template) by name; a LoRA run's folder with the bases it stands on.
    pub fn new(inputs: &[(&str, &Path)], settings: impl Serialize) -> Result<Self> {
        let inputs = inputs
            .iter()
            .map(|&(role, path)| Ok((role.to_owned(), Input { path: path.display().to_string(), sha256: digest_with_bases(path)? })))
            .collect::<Result<_>>()?;
        Ok(Self { inputs, settings: serde_json::to_value(settings).expect("settings serialise") })
    }

    /// The digest of the input in `role` (empty if there is none).
    pub fn digest(&self, role: &str) -> &str {
        self.inputs.get(role).map_or("", |i| i.sha256.as_str())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a run record serialises")
    }

    /// Refuses resuming `out`, whose checkpoint recorded `saved`, as this run: naming every input
    /// whose bytes differ and every setting that differs, except `applied` ones, which a resumed
    /// run takes from the flags (said here).
    pub fn check_resumes(&self, out: &Path, saved: &[u8], applied: &[&str]) -> Result<()> {
        let path = out.join("checkpoint").join(RUN_FILE);
        let saved: RunRecord = serde_json::from_slice(saved).map_err(|e| format!("{}: not a run record: {e}", path.display()))?;
        let mut differences = vec![];
        for (role, now) in &self.inputs {
            match saved.inputs.get(role) {
                Some(then) if then.sha256 == now.sha256 => {}
                Some(then) => differences.push(format!(
                    "the {role} ({}) is not the one the run started on ({}): its SHA-256 was {}, now {}",
                    now.path,
                    then.path,
                    short(&then.sha256),
                    short(&now.sha256)
                )),
                None => differences.push(format!("the run had no {role}; now {}", now.path)),
            }
        }
        for role in saved.inputs.keys().filter(|role| !self.inputs.contains_key(*role)) {
            differences.push(format!("the run started with a {role} ({}); now none", saved.inputs[role].path));
        }
        let empty = serde_json::Map::new();
        let (then, now) = (saved.settings.as_object().unwrap_or(&empty), self.settings.as_object().unwrap_or(&empty));
        let keys: std::collections::BTreeSet<&String> = then.keys().chain(now.keys()).collect();
        for key in keys {
            let (a, b) = (then.get(key).unwrap_or(&serde_json::Value::Null), now.get(key).unwrap_or(&serde_json::Value::Null));
            if a == b {
                continue;
            }
            if applied.contains(&key.as_str()) {
                eprintln!("note: {key} is now {b} (the run started with {a})");
            } else {
                differences.push(format!("{key} was {a}, now {b}"));
            }
        }
        if differences.is_empty() {
            return Ok(());
        }
        Err(format!(
            "cannot resume {}: it was started on other inputs or settings, and continuing would mix two runs:\n  {}\nrepeat the command it was started with, or start afresh with --overwrite",
            out.display(),
            differences.join("\n  ")
        ))
    }
}

/// Before `out` is resumed as `record`: refused if its checkpoint was started on other inputs or
/// settings. A checkpoint with no record is resumed unchecked, and said so.
pub fn check(out: &Path, record: &RunRecord, applied: &[&str]) -> Result<()> {
    match checkpoints::load_run_record(out)? {
        Some(Some(saved)) => record.check_resumes(out, &saved, applied),
        Some(None) => {
            eprintln!("note: {} records no inputs (an older tinyrlhf wrote it); resuming without checking them", out.display());
            Ok(())
        }
        None => Ok(()),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell two files apart in a message.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

/// [`digest`] of `path`, and for a LoRA run's folder of every base it stands on as well: a base
/// replaced after a kill changes the run's input as much as the folder itself would.
fn digest_with_bases(path: &Path) -> Result<String> {
    let chain = model_dirs::model_and_bases(path);
    if chain.len() == 1 {
        return digest(path);
    }
    let mut hasher = Sha256::new();
    for model in &chain {
        hasher.update(digest(model)?.as_bytes());
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// SHA-256 of a file, or of a model folder's model files (names and bytes, in name order; a LoRA
/// run's `adapter/` included).
fn digest(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    if path.is_dir() {
        let mut names = model_files_in(path, "")?;
        if path.join("adapter").is_dir() {
            names.extend(model_files_in(&path.join("adapter"), "adapter/")?);
        }
        names.sort();
        for name in names {
            hasher.update(name.as_bytes());
            hash_file(&mut hasher, &path.join(&name))?;
        }
    } else {
        hash_file(&mut hasher, path)?;
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// Feeds a file's bytes to `hasher` as they are read: read whole, a model file stayed in the
/// process's memory (the allocator keeps what it had), a second copy of an f32 base.
fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    std::io::copy(&mut file, hasher).map(|_| ()).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The model files directly in `dir`, each named `prefix` + its name.
fn model_files_in(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_model_file(name))
        .map(|name| format!("{prefix}{name}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tinyrlhf-resume-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_resume_on_other_data_or_settings_is_refused_naming_each_difference() {
        let dir = folder("differ");
        let (data, model) = (dir.join("prompts.jsonl"), dir.join("model"));
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        std::fs::write(model.join("metrics.jsonl"), "{}").unwrap();
        std::fs::write(&data, "{\"prompt\": \"a\"}\n").unwrap();
        let settings = serde_json::json!({"lr": 0.001, "iterations": 10});
        let saved = RunRecord::new(&[("model", &model), ("prompts", &data)], &settings).unwrap().to_json();

        let same = RunRecord::new(&[("model", &model), ("prompts", &data)], &settings).unwrap();
        assert!(same.check_resumes(&dir, &saved, &[]).is_ok());
        // A log the run writes beside its model is not part of the model.
        std::fs::write(model.join("metrics.jsonl"), "{\"loss\": 1}").unwrap();
        assert!(same.check_resumes(&dir, &saved, &[]).is_ok());
        let longer = RunRecord::new(&[("model", &model), ("prompts", &data)], serde_json::json!({"lr": 0.001, "iterations": 20})).unwrap();
        assert!(longer.check_resumes(&dir, &saved, &["iterations"]).is_ok(), "an applied setting is said, not refused");

        std::fs::write(&data, "{\"prompt\": \"b\"}\n").unwrap();
        std::fs::write(model.join("config.json"), "{\"n_layer\": 2}").unwrap();
        let changed = RunRecord::new(&[("model", &model), ("prompts", &data)], serde_json::json!({"lr": 0.01, "iterations": 10})).unwrap();
        let message = changed.check_resumes(&dir, &saved, &[]).unwrap_err();
        assert!(
            message.contains("the prompts") && message.contains("the model") && message.contains("lr was 0.001, now 0.01"),
            "{message}"
        );
        assert!(message.contains("--overwrite"), "{message}");
        std::fs::remove_dir_all(dir).ok();
    }
}
