//! Files, for the CLI only: reads that name the path in their errors and are bounded, writes that
//! are atomic (a temp file then a rename, so a killed run never leaves half a file), a run's
//! metrics. Model folders are `model_dirs.rs`'s, their checkpoint folder `checkpoints.rs`'s.

use std::path::Path;

use tinyrlhf_data::Record;
use tinyrlhf_tokenizer::Tokenizer;

pub type Result<T> = std::result::Result<T, String>;

/// A file of data or settings (prompts, rankings, demonstrations, a config, a tokenizer, a
/// template): at most [`tinyrlhf_data::MAX_FILE_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>> {
    read_at_most(path, tinyrlhf_data::MAX_FILE_BYTES as u64, "files of data or settings")
}

/// A file the size of a model (weights, a checkpoint's state, a corpus): at most the memory this
/// process may use.
pub fn read_large(path: &Path) -> Result<Vec<u8>> {
    read_at_most(path, tinyrlhf_rlhf::memory::sizes::memory_limit(), "files as large as this machine's memory")
}

/// `path`'s bytes, refused past `limit` (`what` says which files that limit is for) and refused
/// when it is not a regular file: a FIFO would block with no word and a device (`/dev/zero`)
/// would fill the memory.
fn read_at_most(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |size: u64| format!("{} holds {} or more; {what} of at most {} are read", path.display(), bytes(size), bytes(limit));
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    regular_file(path, &meta)?;
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut data).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A file that grew while it was read.
    if data.len() as u64 > limit {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

/// Refuses what is not a regular file (a FIFO, a device, a socket; a folder has its own words).
pub(crate) fn regular_file(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() { "a folder where a file is expected" } else { "not a regular file (a FIFO, a device or a socket)" };
    Err(format!("{} is {kind}: inputs are read from files", path.display()))
}

/// A byte count for messages: `64 MiB`, `12 KiB`, `5 bytes`.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A text file as large as a model (a corpus), without the byte-order mark Windows editors put first.
pub fn read_text(path: &Path) -> Result<String> {
    let text = String::from_utf8(read_large(path)?).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("{}: not valid UTF-8 (byte {} of the file)", path.display(), at + 1)
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// One line of standard input (its newline kept), `None` at its end; refused past
/// [`tinyrlhf_data::MAX_LINE_BYTES`]: an endless stream without newlines would fill the memory.
pub fn stdin_line() -> Result<Option<Vec<u8>>> {
    use std::io::{BufRead, Read};
    let limit = tinyrlhf_data::MAX_LINE_BYTES;
    let mut line = Vec::new();
    let read = std::io::stdin().lock().take(limit as u64 + 1).read_until(b'\n', &mut line).map_err(|e| format!("standard input: {e}"))?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > limit {
        return Err(format!(
            "standard input: a line of more than {} is not a prompt or an answer; lines of at most that are read",
            bytes(limit as u64)
        ));
    }
    Ok(Some(line))
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename; a path that
/// is a symlink or a special file (`/dev/null`) is written through instead, never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_name().ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let written = std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display())).and_then(|()| rename(&tmp, path));
    if written.is_err() {
        // Half a file under a hidden name helps nobody: the error says what failed.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads a JSONL file of records; errors name the file, line and field (invalid UTF-8 included).
pub fn read_records<T: Record>(path: &Path) -> Result<Vec<T>> {
    let name = path.display().to_string();
    let bytes = read(path)?;
    let text = tinyrlhf_data::decode_text(&name, &bytes).map_err(|e| e.to_string())?;
    tinyrlhf_data::read_jsonl(&name, text).map_err(|e| e.to_string())
}

/// Prompts from a JSONL file of `{"prompt"}` or a text file of one per line.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    tinyrlhf_data::read_prompts(&path.display().to_string(), &read(path)?).map_err(|e| e.to_string())
}

pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_json_bytes(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| format!("cannot move {} to {}: {e}", from.display(), to.display()))
}

/// Removes a file, if there is one.
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", path.display())),
        _ => Ok(()),
    }
}

/// Before a fresh run in `out`: refuses when `out` holds a run that `--resume` would continue,
/// says so when `--resume` found nothing to continue, and clears an old metrics file.
pub fn start_fresh(out: &Path, resume: bool, stage: &str) -> Result<()> {
    if resume {
        eprintln!("no checkpoint in {}; starting fresh", out.display());
    } else if out.join("checkpoint").exists() {
        return Err(format!("{} already holds a {stage} run; pass --resume to continue it or choose another --out", out.display()));
    }
    let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    Ok(())
}

/// An iteration's stats as a metrics line, its `sample_prompt` / `sample_response` ids replaced by
/// one `sample` text ("prompt -> answer").
pub fn with_sample_text(mut line: serde_json::Value, tokenizer: &Tokenizer) -> serde_json::Value {
    let ids = |key: &str| -> Vec<u32> { serde_json::from_value(line[key].clone()).unwrap_or_default() };
    let (prompt, response) = (ids("sample_prompt"), ids("sample_response"));
    if let Some(object) = line.as_object_mut() {
        object.remove("sample_prompt");
        object.remove("sample_response");
    }
    line["sample"] =
        format!("{} -> {}", tokenizer.decode_text(&prompt).unwrap_or_default(), tokenizer.decode_response(&response).unwrap_or_default())
            .into();
    line
}

/// Cuts a resumed run's `metrics.jsonl` back to the `steps` its checkpoint reached: each step's
/// line once, in order (the lines a killed run wrote past its checkpoint go, and a step's line
/// written twice is kept once). A line names its step as `step` or `iteration`.
pub fn keep_metrics_through(path: &Path, steps: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&read_large(path)?).into_owned();
    let mut seen = std::collections::BTreeSet::new();
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let step = value.get("step").or_else(|| value.get("iteration")).and_then(serde_json::Value::as_u64);
        if step.is_some_and(|step| step as usize <= steps && seen.insert(step)) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.len() != text.len() {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Appends one line to `metrics.jsonl` in one write. A line a kill cut short (the file does not
/// end in a newline) is dropped first, so the file stays a line of JSON per step.
pub fn append_metrics(path: &Path, line: &serde_json::Value) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path).map_err(failed)?;
    let len = file.metadata().map_err(failed)?.len();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1)).and_then(|_| file.read_exact(&mut last)).map_err(failed)?;
        if last[0] != b'\n' {
            let text = std::fs::read(path).map_err(failed)?;
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(whole as u64).map_err(failed)?;
        }
    }
    file.write_all(format!("{line}\n").as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_runs_metrics_keep_each_step_up_to_its_checkpoint_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // What kills left: steps past the checkpoint (5), a step logged twice, a line cut short.
        let lines = [1, 2, 3, 3, 4, 5, 6, 7, 5, 6].map(|step| format!("{{\"step\": {step}, \"loss\": 1.0}}\n")).concat();
        std::fs::write(&path, lines + "{\"iteration\": 6, \"lo").unwrap();
        keep_metrics_through(&path, 5).unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [1, 2, 3, 4, 5]);
        // An iteration's line counts as its step.
        std::fs::write(&path, "{\"iteration\": 1}\n{\"iteration\": 2}\n").unwrap();
        keep_metrics_through(&path, 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"iteration\": 1}\n");
    }
}
