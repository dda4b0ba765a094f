//! What a command writes, claimed before it reads anything: an output never destroys an input or a
//! stranger's files, and one output has one run at a time.
//!
//! - An `--out` that is (after resolving symlinks) any path the command reads, a model file inside
//!   a folder it reads, or a folder holding one, is always refused.
//! - A model folder `--out` that is not empty is refused unless it holds a checkpoint of a run
//!   (`--resume` continues it; a fresh run there is refused as before) or `--overwrite` is given
//!   (transformers' `overwrite_output_dir`): then our files in it (an old `chat_template.jinja`
//!   included, which would otherwise win over the new template) are removed first; anything else
//!   in it is left alone.
//! - A file `--out` that exists is replaced only with `--overwrite` (`rank` continues its own file);
//!   one that is a symlink or a special file (`/dev/null`) is written through, never replaced.
//! - A model folder is locked for the run (`OUT/.lock`, the OS's advisory lock, holding our pid):
//!   a second run on it is refused naming the process that holds it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::files::Result;

/// The files a run writes into a model folder: what `--overwrite` clears.
const MODEL_FILES: [&str; 15] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
    "manifest.json",
    "metrics.jsonl",
    "adapter",
    "adapter.gguf",
    "value",
    "checkpoint",
    "checkpoint.new",
    "checkpoint.old",
];

/// What `tinyrlhf data` writes into its folder.
const DATA_FILES: [&str; 4] = ["pretrain.txt", "demos.jsonl", "prompts.jsonl", "heldout.jsonl"];

const LOCK: &str = ".lock";

/// How a command writes its `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A model folder, resumable from `checkpoint/`.
    ModelDir,
    /// `tinyrlhf data`'s folder of files.
    DataDir,
    /// `tinyrlhf export`'s folder of datasets and configs.
    ExportDir,
    /// One file, replaced whole.
    File,
    /// One file the command reads first and writes back longer (`rank`).
    ContinuedFile,
}

/// A command's output and the paths it reads.
#[derive(Debug)]
pub struct Plan<'a> {
    pub out: &'a Path,
    pub kind: Out,
    pub inputs: Vec<&'a Path>,
    pub resume: bool,
}

/// Held for the run: the model folder's lock, released when the process ends.
#[derive(Debug)]
pub struct Claim {
    lock: Option<File>,
    /// The folder this claim created: removed again if the run wrote nothing into it.
    created: Option<PathBuf>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let Some(dir) = &self.created else { return };
        let only_lock = std::fs::read_dir(dir).is_ok_and(|entries| entries.filter_map(|e| e.ok()).all(|e| e.file_name() == LOCK));
        if only_lock {
            drop(self.lock.take());
            let _ = std::fs::remove_file(dir.join(LOCK));
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Checks `plan` and takes what it writes for this run.
pub fn claim(plan: &Plan, overwrite: bool) -> Result<Claim> {
    let out = plan.out;
    if plan.resume && overwrite {
        return Err("--resume continues the run in --out and --overwrite replaces it: give one of them".into());
    }
    let out_at = resolved(out);
    // A LoRA run's folder is read with the base it names: that base is an input too.
    let inputs: Vec<PathBuf> = plan.inputs.iter().flat_map(|input| crate::model_dirs::model_and_bases(input)).collect();
    for input in &inputs {
        let input_at = resolved(input);
        // A report may go beside a model (`eval --json MODEL/eval.json`), never over a file of it.
        let over_a_model_file = out_at.parent() == Some(input_at.as_path())
            && input_at.is_dir()
            && out_at.file_name().is_some_and(|name| MODEL_FILES.iter().any(|ours| name == *ours));
        let what = if out_at == input_at {
            "is"
        } else if over_a_model_file {
            "is a file of"
        } else if input_at.starts_with(&out_at) {
            "holds"
        } else {
            continue;
        };
        return Err(format!(
            "--out {} {what} {}, which this command reads: a run never writes over its inputs; choose another --out",
            out.display(),
            input.display()
        ));
    }
    match plan.kind {
        Out::File => check_file(out, overwrite)?,
        Out::ContinuedFile => {}
        Out::DataDir => clear_dir(out, &DATA_FILES, overwrite, false)?,
        Out::ExportDir => clear_files(out, &tinyrlhf_rlhf::trl_paths(), overwrite)?,
        Out::ModelDir => {
            if out.exists() && !out.is_dir() {
                return Err(format!("--out {} is a file; a model is written as a folder", out.display()));
            }
            let created = (!out.exists()).then(|| out.to_owned());
            let claim = Claim { lock: Some(lock(out)?), created };
            // With --resume too: a folder with no checkpoint in it is not a run to continue.
            clear_dir(out, &MODEL_FILES, overwrite, true)?;
            return Ok(claim);
        }
    }
    Ok(Claim { lock: None, created: None })
}

/// `path` with symlinks resolved; a path that does not exist yet, by its parent's.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(at) = path.canonicalize() {
        return at;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent().and_then(|p| p.canonicalize().ok()), absolute.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => absolute,
    }
}

fn check_file(out: &Path, overwrite: bool) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(out) else { return Ok(()) };
    if meta.is_dir() {
        return Err(format!("--out {} is a folder; this command writes a file", out.display()));
    }
    // A symlink or a device is written through (see `files::write_atomic`), never replaced.
    if meta.is_file() && meta.len() > 0 && !overwrite {
        return Err(format!(
            "--out {} exists ({} bytes); pass --overwrite to replace it, or choose another --out",
            out.display(),
            meta.len()
        ));
    }
    Ok(())
}

/// Refuses a folder holding anything but our lock (and, for a model folder, a run's checkpoint,
/// which `--resume` or the fresh-run check speaks for) unless `overwrite`, which removes `ours`.
fn clear_dir(out: &Path, ours: &[&str], overwrite: bool, checkpoints: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(()) };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| n != LOCK);
    names.sort();
    if names.is_empty() {
        return Ok(());
    }
    if overwrite {
        for name in ours.iter().filter(|n| names.iter().any(|m| m == *n)) {
            let path = out.join(name);
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|e| format!("--overwrite: cannot remove {}: {e}", path.display()))?;
        }
        return Ok(());
    }
    if checkpoints && names.iter().any(|n| n.starts_with("checkpoint")) {
        return Ok(());
    }
    let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    let more = if names.len() > 4 { format!(" and {} more", names.len() - 4) } else { String::new() };
    Err(format!(
        "--out {} is not empty ({}{more}) and holds no run to resume: pass --overwrite to replace what tinyrlhf wrote there, or choose another --out",
        out.display(),
        shown.join(", ")
    ))
}

/// [`clear_dir`] for a folder of nested files (`tinyrlhf export`'s): `--overwrite` removes exactly
/// the files at `ours` (paths inside `out`) and the folders that leaves empty, so what TRL wrote
/// beside them (`runs/`) and anything else a person keeps there stays.
fn clear_files(out: &Path, ours: &[String], overwrite: bool) -> Result<()> {
    if !overwrite {
        return clear_dir(out, &[], false, false);
    }
    for path in ours.iter().map(|p| out.join(p)).filter(|p| p.is_file()) {
        std::fs::remove_file(&path).map_err(|e| format!("--overwrite: cannot remove {}: {e}", path.display()))?;
    }
    // Deepest first; a folder that still holds something is kept (the error is that).
    let mut folders: Vec<PathBuf> =
        ours.iter().flat_map(|p| Path::new(p).ancestors().skip(1).map(|a| out.join(a)).collect::<Vec<_>>()).collect();
    folders.sort();
    folders.dedup();
    folders.sort_by_key(|f| std::cmp::Reverse(f.components().count()));
    for folder in folders.iter().filter(|f| *f != out) {
        let _ = std::fs::remove_dir(folder);
    }
    Ok(())
}

/// Takes `OUT/.lock` for this process, or says which process holds it.
fn lock(out: &Path) -> Result<File> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let path = out.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder: String = holder.trim().chars().take(40).collect();
        let holder = if holder.is_empty() { "another process".to_owned() } else { format!("process {holder}") };
        return Err(format!(
            "--out {} is in use by another tinyrlhf run ({holder}): wait for it to finish, or choose another --out",
            out.display()
        ));
    }
    let pid = std::process::id().to_string();
    let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(pid.as_bytes()));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder, removed when the test ends.
    fn dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("tinyrlhf-outputs-{name}-")).tempdir().unwrap()
    }

    fn plan<'a>(out: &'a Path, kind: Out, inputs: Vec<&'a Path>) -> Plan<'a> {
        Plan { out, kind, inputs, resume: false }
    }

    #[test]
    fn an_out_that_is_an_input_or_inside_one_is_refused_even_with_overwrite() {
        let scratch = dir("inputs");
        let root = scratch.path();
        let model = root.join("model");
        std::fs::create_dir_all(&model).unwrap();
        let message = claim(&plan(&model, Out::ModelDir, vec![&model]), true).unwrap_err();
        assert!(message.contains("which this command reads"), "{message}");
        let inside = model.join("model.safetensors");
        let message = claim(&plan(&inside, Out::File, vec![&model]), true).unwrap_err();
        assert!(message.contains("is a file of"), "{message}");
        // A report beside the model's files is fine.
        claim(&plan(&model.join("eval.json"), Out::File, vec![&model]), false).unwrap();
        #[cfg(unix)]
        {
            let link = root.join("link");
            std::os::unix::fs::symlink(&model, &link).unwrap();
            assert!(claim(&plan(&link, Out::ModelDir, vec![&model]), true).unwrap_err().contains("is"));
        }
    }

    #[test]
    fn a_folder_of_other_files_needs_overwrite_which_removes_only_ours() {
        let scratch = dir("overwrite");
        let out = scratch.path();
        for name in ["config.json", "chat_template.jinja", "notes.txt"] {
            std::fs::write(out.join(name), "x").unwrap();
        }
        let message = claim(&plan(out, Out::ModelDir, vec![]), false).unwrap_err();
        assert!(
            message.contains("not empty (chat_template.jinja, config.json, notes.txt)") && message.contains("--overwrite"),
            "{message}"
        );
        drop(claim(&plan(out, Out::ModelDir, vec![]), true).unwrap());
        assert!(!out.join("chat_template.jinja").exists() && !out.join("config.json").exists());
        assert!(out.join("notes.txt").exists(), "a stranger's file stays");
    }

    #[test]
    fn a_second_claim_on_a_model_folder_names_the_process_holding_it() {
        let scratch = dir("lock");
        let out = scratch.path();
        let first = claim(&plan(out, Out::ModelDir, vec![]), false).unwrap();
        let message = claim(&Plan { resume: true, ..plan(out, Out::ModelDir, vec![]) }, false).unwrap_err();
        assert!(message.contains(&format!("process {}", std::process::id())), "{message}");
        drop(first);
        claim(&Plan { resume: true, ..plan(out, Out::ModelDir, vec![]) }, false).unwrap();
        // --resume into a folder of other files (no checkpoint) is no resume: refused as a fresh run is.
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let message = claim(&Plan { resume: true, ..plan(out, Out::ModelDir, vec![]) }, false).unwrap_err();
        assert!(message.contains("holds no run to resume"), "{message}");
    }

    #[test]
    fn an_existing_file_is_replaced_only_when_asked() {
        let scratch = dir("file");
        let root = scratch.path();
        let out = root.join("typed.jsonl");
        std::fs::write(&out, "{\"ranking\":[0,1]}\n").unwrap();
        assert!(claim(&plan(&out, Out::File, vec![]), false).unwrap_err().contains("pass --overwrite"));
        claim(&plan(&out, Out::File, vec![]), true).unwrap();
        claim(&plan(&out, Out::ContinuedFile, vec![]), false).unwrap();
        claim(&plan(Path::new("/dev/null"), Out::File, vec![]), false).unwrap();
    }
}
