//! A run's checkpoint folder, `OUT/checkpoint/`: what `--resume` needs (the trainer's state, its
//! model or adapters, and the run's record of inputs and settings, `run.json`), swapped in whole so
//! a kill at any moment leaves a complete checkpoint, the previous one or the new one.

use std::path::{Path, PathBuf};

use tinyrlhf_rlhf::TrainCheckpoint;

use crate::files::{self, Result, rename};

/// The file of a checkpoint that records its run (`resume.rs`).
pub const RUN_FILE: &str = "run.json";

/// Saves a trainer's resumable state as `dir/checkpoint/` (every method's in one layout).
pub fn save(dir: &Path, checkpoint: &TrainCheckpoint, run_record: &[u8]) -> Result<()> {
    // The trainer's files last: their `trainer.json` marks a complete checkpoint.
    let parts: Vec<(&str, &[u8])> = std::iter::once((RUN_FILE, run_record)).chain(checkpoint.files()).collect();
    save_files(dir, &parts)
}

/// Where a run in `dir` keeps its checkpoint (for messages).
pub fn folder(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

/// The run record of the last complete checkpoint in `dir`: `None` when there is no checkpoint,
/// `Some(None)` when an older tinyrlhf wrote it without one.
pub fn load_run_record(dir: &Path) -> Result<Option<Option<Vec<u8>>>> {
    if load_files(dir, &[])?.is_none() {
        return Ok(None);
    }
    let path = dir.join("checkpoint").join(RUN_FILE);
    Ok(Some(if path.exists() { Some(files::read(&path)?) } else { None }))
}

/// A trainer's last complete checkpoint in `dir`, if any.
pub fn load(dir: &Path) -> Result<Option<TrainCheckpoint>> {
    if load_files(dir, &[])?.is_none() {
        return Ok(None);
    }
    let mut parts = std::collections::BTreeMap::new();
    for name in TrainCheckpoint::NAMES {
        let path = dir.join("checkpoint").join(name);
        if path.exists() {
            parts.insert(name, files::read_large(&path)?);
        }
    }
    TrainCheckpoint::from_files(|name| parts.remove(name)).map(Some).map_err(|e| format!("{}: {e}", folder(dir).display()))
}

/// Saves named files as `dir/checkpoint/`, swapped in whole: the new state is written beside it
/// (each file synced to disk), then renamed into place, so a kill or a power cut at any moment
/// leaves a complete checkpoint, the previous one or the new one. The last file should be
/// `trainer.json`: its presence marks a complete checkpoint.
fn save_files(dir: &Path, parts: &[(&str, &[u8])]) -> Result<()> {
    swap_in(dir, parts, usize::MAX).map(|_| ())
}

/// The swap's steps, stopping after `limit` of them (tests play a kill between any two).
/// Returns how many ran.
fn swap_in(dir: &Path, parts: &[(&str, &[u8])], limit: usize) -> Result<usize> {
    let (new, _, _) = checkpoint_paths(dir);
    let mut steps: Vec<Box<dyn FnOnce() -> Result<()> + '_>> = vec![
        Box::new(|| remove_dir(&new)),
        Box::new(|| std::fs::create_dir_all(&new).map_err(|e| format!("cannot create {}: {e}", new.display()))),
    ];
    for &(name, bytes) in parts {
        let new = &new;
        steps.push(Box::new(move || write_synced(&new.join(name), bytes)));
    }
    steps.push(Box::new(|| sync_dir(&new)));
    steps.extend(promote_steps(dir));
    let mut done = 0;
    for step in steps.into_iter().take(limit) {
        step()?;
        done += 1;
    }
    Ok(done)
}

/// Moves a complete `checkpoint.new` into place: current -> old, new -> current, old removed.
/// Each step leaves a loadable state.
fn promote_steps(dir: &Path) -> Vec<Box<dyn FnOnce() -> Result<()> + '_>> {
    let (new, current, old) = checkpoint_paths(dir);
    let (new2, current2, old2) = (new.clone(), current.clone(), old.clone());
    vec![
        Box::new(move || remove_dir(&old)),
        Box::new(move || if current.exists() { rename(&current, &old2) } else { Ok(()) }),
        Box::new(move || rename(&new2, &current2)),
        Box::new(move || sync_dir(dir)),
        Box::new(move || remove_dir(&dir.join("checkpoint.old"))),
    ]
}

/// The named files of the newest complete checkpoint in `dir`, in the order asked. A swap that
/// was interrupted is finished first (or, if its new state was incomplete, dropped), so whatever
/// moment a kill came, the last complete checkpoint is found.
fn load_files(dir: &Path, names: &[&str]) -> Result<Option<Vec<Vec<u8>>>> {
    let (new, current, old) = checkpoint_paths(dir);
    let complete = |p: &Path| p.join(TrainCheckpoint::TRAINER).exists();
    if complete(&new) {
        for step in promote_steps(dir) {
            step()?;
        }
    } else if !complete(&current) && complete(&old) {
        rename(&old, &current)?;
    }
    if !complete(&current) {
        return Ok(None);
    }
    names.iter().map(|name| files::read_large(&current.join(name))).collect::<Result<Vec<_>>>().map(Some)
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", path.display())),
        _ => Ok(()),
    }
}

/// Writes a file through a temp name, synced to disk before the rename: once it exists under its
/// name, all of it is there.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    rename(&tmp, path)
}

/// Makes renames inside `dir` durable. Directories cannot be opened for syncing on every
/// platform (Windows), where the rename itself is what the file system guarantees.
fn sync_dir(dir: &Path) -> Result<()> {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

fn checkpoint_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("checkpoint.new"), dir.join("checkpoint"), dir.join("checkpoint.old"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(tag: &str) -> Vec<(&'static str, Vec<u8>)> {
        vec![("model.safetensors", format!("weights {tag}").into_bytes()), ("trainer.json", format!("state {tag}").into_bytes())]
    }

    fn save_until(dir: &Path, tag: &str, limit: usize) -> usize {
        let parts = parts(tag);
        let borrowed: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        swap_in(dir, &borrowed, limit).unwrap()
    }

    #[test]
    fn a_kill_between_any_two_steps_of_the_swap_leaves_a_checkpoint_that_loads() {
        let root = std::env::temp_dir().join(format!("tinyrlhf-swap-{}", std::process::id()));
        let all_steps = save_until(&root.join("probe"), "x", usize::MAX);
        let names = ["model.safetensors", "trainer.json"];
        for limit in 0..=all_steps {
            let dir = root.join(format!("kill-after-{limit}"));
            save_until(&dir, "first", usize::MAX);
            save_until(&dir, "second", limit);
            let loaded = load_files(&dir, &names).unwrap().unwrap_or_else(|| panic!("no checkpoint after {limit} steps"));
            let state = String::from_utf8(loaded[1].clone()).unwrap();
            let tag = state.strip_prefix("state ").unwrap();
            // The weights always belong to the state they were saved with.
            assert_eq!(loaded[0], format!("weights {tag}").into_bytes(), "after {limit} steps");
            // Once the new state is complete on disk, it is the one found.
            let new_complete = limit >= 2 + names.len();
            assert_eq!(tag, if new_complete { "second" } else { "first" }, "after {limit} steps");
            // Loading finished or dropped the interrupted swap: a later save works as usual.
            save_until(&dir, "third", usize::MAX);
            assert_eq!(load_files(&dir, &names).unwrap().unwrap()[1], b"state third");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
