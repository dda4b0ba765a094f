//! Files, for the CLI only: reads that name the path in their errors, writes that are atomic (a
//! temp file then a rename, so a killed run never leaves half a file), and model directories.
//!
//! A model directory holds `config.json`, `model.safetensors` and `tokenizer.json` (so it is
//! loadable on its own, by us or by HF transformers), a `manifest.json` saying how it was made, and
//! — while training — `checkpoint/` with what `--resume` needs.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use tinyrlhf_data::Record;
use tinyrlhf_model::{Gpt, GptConfig, ScalarModel};
use tinyrlhf_rlhf::TrainCheckpoint;
use tinyrlhf_tokenizer::Tokenizer;

pub type Result<T> = std::result::Result<T, String>;

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_name().ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), path.display()))
}

/// Reads a JSONL file of records; errors name the file, line and field.
pub fn read_records<T: Record>(path: &Path) -> Result<Vec<T>> {
    tinyrlhf_data::read_jsonl(&path.display().to_string(), &read_text(path)?).map_err(|e| e.to_string())
}

pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_json_bytes(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// A model directory's language model and tokenizer, checked against each other.
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<(GptConfig, Gpt, Tokenizer)> {
    let tokenizer = read_tokenizer(&dir.join("tokenizer.json"))?;
    let (config, gpt) = tinyrlhf_model::load_gpt(&read(&dir.join("config.json"))?, &read(&dir.join("model.safetensors"))?, device)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if config.vocab_size != tokenizer.vocab_size() {
        return Err(format!(
            "{}: the model's vocabulary ({}) does not match its tokenizer.json ({})",
            dir.display(),
            config.vocab_size,
            tokenizer.vocab_size()
        ));
    }
    Ok((config, gpt, tokenizer))
}

/// Writes a loadable model directory (each file atomically, weights before the config that
/// describes them).
pub fn save_model_dir(dir: &Path, checkpoint: &TrainCheckpoint, tokenizer: &Tokenizer, manifest: &serde_json::Value) -> Result<()> {
    save_weights_dir(dir, &checkpoint.config_json, &checkpoint.weights, tokenizer, manifest)
}

/// Like [`save_model_dir`] from the parts: a language model's or a scalar model's weights.
pub fn save_weights_dir(dir: &Path, config_json: &str, weights: &[u8], tokenizer: &Tokenizer, manifest: &serde_json::Value) -> Result<()> {
    write_atomic(&dir.join("tokenizer.json"), tokenizer.to_json().map_err(|e| e.to_string())?.as_bytes())?;
    write_atomic(&dir.join("model.safetensors"), weights)?;
    write_atomic(&dir.join("config.json"), config_json.as_bytes())?;
    write_atomic(&dir.join("manifest.json"), serde_json::to_string_pretty(manifest).expect("json").as_bytes())
}

/// A reward (or value) model directory: the scalar model and its tokenizer.
pub fn load_scalar_dir(dir: &Path, device: &Device) -> Result<(GptConfig, ScalarModel, Tokenizer)> {
    let tokenizer = read_tokenizer(&dir.join("tokenizer.json"))?;
    let (config, model) = tinyrlhf_model::load_scalar_model(&read(&dir.join("config.json"))?, &read(&dir.join("model.safetensors"))?, device)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((config, model, tokenizer))
}

const CHECKPOINT_FILES: [&str; 4] = ["config.json", "model.safetensors", "optimizer.bpk", "trainer.json"];

/// Saves a supervised trainer's resumable state as `dir/checkpoint/`.
pub fn save_checkpoint(dir: &Path, checkpoint: &TrainCheckpoint) -> Result<()> {
    let parts: [&[u8]; 4] = [checkpoint.config_json.as_bytes(), &checkpoint.weights, &checkpoint.optimizer, checkpoint.state_json.as_bytes()];
    save_checkpoint_files(dir, &CHECKPOINT_FILES.into_iter().zip(parts).collect::<Vec<_>>())
}

/// A supervised trainer's last complete checkpoint in `dir`, if any.
pub fn load_checkpoint(dir: &Path) -> Result<Option<TrainCheckpoint>> {
    let Some(mut parts) = load_checkpoint_files(dir, &CHECKPOINT_FILES)? else { return Ok(None) };
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|e| format!("{}: checkpoint is not UTF-8: {e}", dir.display()));
    let state_json = text(parts.pop().expect("4 parts"))?;
    let optimizer = parts.pop().expect("4 parts");
    let weights = parts.pop().expect("4 parts");
    Ok(Some(TrainCheckpoint { config_json: text(parts.pop().expect("4 parts"))?, weights, optimizer, state_json }))
}

/// Saves named files as `dir/checkpoint/`, swapped in whole: the new state is written beside it
/// and renamed into place, so a kill at any moment leaves one complete checkpoint. The last file
/// should be `trainer.json`: its presence marks a complete checkpoint.
pub fn save_checkpoint_files(dir: &Path, parts: &[(&str, &[u8])]) -> Result<()> {
    let (new, current, old) = checkpoint_paths(dir);
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(&new).map_err(|e| format!("cannot create {}: {e}", new.display()))?;
    for (name, bytes) in parts {
        std::fs::write(new.join(name), bytes).map_err(|e| format!("cannot write {}: {e}", new.join(name).display()))?;
    }
    let _ = std::fs::remove_dir_all(&old);
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| format!("cannot move {}: {e}", current.display()))?;
    }
    std::fs::rename(&new, &current).map_err(|e| format!("cannot move {}: {e}", new.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The named files of the last complete checkpoint in `dir` (the previous one if a swap was
/// interrupted), in the order asked.
pub fn load_checkpoint_files(dir: &Path, names: &[&str]) -> Result<Option<Vec<Vec<u8>>>> {
    let (_, current, old) = checkpoint_paths(dir);
    let Some(found) = [current, old].into_iter().find(|p| p.join("trainer.json").exists()) else {
        return Ok(None);
    };
    names.iter().map(|name| read(&found.join(name))).collect::<Result<Vec<_>>>().map(Some)
}

fn checkpoint_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("checkpoint.new"), dir.join("checkpoint"), dir.join("checkpoint.old"))
}

/// Appends one JSON line to a metrics file.
pub fn append_metrics(path: &Path, line: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
