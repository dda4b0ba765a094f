//! Real machines stop programs mid-write: `kill -9` at any moment of a run, fifty times over every
//! kind of file the CLI writes (checkpoints, adapters, a merged model, samples, rankings), never
//! leaves a file that reads as whole but is not, never touches an earlier output, and the run
//! resumes (or re-runs) to the end. A full disk is refused with the file it could not write, and
//! the last checkpoint stays loadable.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fresh_dir, ok, shipped_sft, tinyrlhf};
use rand::{RngExt, SeedableRng};

/// Every file under `dir` that a reader could take as whole (hidden temp files and an unfinished
/// `checkpoint.new` are not: the CLI writes through them and never reads them as results) must
/// parse as its kind: JSON, every line of JSONL, safetensors.
fn check_whole(dir: &Path, what: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "checkpoint.new" {
            continue;
        }
        if path.is_dir() {
            check_whole(&path, what);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let broken = if name.ends_with(".jsonl") {
            let text = String::from_utf8_lossy(&bytes);
            text.lines().any(|line| serde_json::from_str::<serde_json::Value>(line).is_err()) || !(text.is_empty() || text.ends_with('\n'))
        } else if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&bytes).is_err()
        } else if name.ends_with(".safetensors") {
            safetensors::SafeTensors::deserialize(&bytes).is_err()
        } else {
            false
        };
        assert!(!broken, "after a kill during {what}, {} reads as whole but is not", path.display());
    }
}

/// Every file under `dir` with its size.
fn sizes(dir: &Path, into: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => sizes(&entry.path(), into),
            Ok(meta) => into.push((entry.path(), meta.len())),
            Err(_) => {}
        }
    }
}

/// When to kill a run: at a moment, or at the first write seen under the folder the run writes.
#[derive(Clone, Copy, Debug)]
enum Kill {
    After(Duration),
    AtAWrite { from: Duration },
}

/// Starts `tinyrlhf args` in `dir` and kills it (SIGKILL) as `kill` says, unless it ended first;
/// whether it was killed. A write is a temp file or `checkpoint.new`, or a file that appeared or
/// changed size since the last look (a file written in place).
fn run_and_kill(args: &[&str], dir: &Path, out: &Path, kill: Kill, limit: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let start = Instant::now();
    let watched = out.parent().filter(|_| out.extension().is_some()).unwrap_or(out).to_owned();
    let mut seen = vec![];
    sizes(&watched, &mut seen);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let now = start.elapsed();
        let due = match kill {
            Kill::After(after) => now >= after,
            Kill::AtAWrite { from } => {
                let mut files = vec![];
                sizes(&watched, &mut files);
                let writing = files.iter().any(|(path, size)| {
                    let name = path.to_string_lossy();
                    let before = seen.iter().find(|(p, _)| p == path).map(|(_, s)| s);
                    // The metrics' appends (one write a step) would take every kill: outputs' writes are sought.
                    !name.ends_with("metrics.jsonl")
                        && (name.contains(".tmp-") || name.contains("checkpoint.new") || before.is_none_or(|s| s != size))
                });
                seen = files;
                (now >= from && writing) || now >= limit
            }
        };
        if due {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

/// The world's data files, small: what every run here reads.
fn make_world(dir: &Path) {
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "24", "--prompts", "6", "--heldout", "4"], dir);
}

/// A LoRA SFT of `steps` steps on the world's demos, saving at every step into `out`.
fn lora_sft<'a>(sft: &'a str, steps: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["sft", "--model", sft, "--demos", "world/demos.jsonl", "--steps", steps, "--save-every", "1", "--lora-rank", "4", "--out", out]
}

/// The `--out` of a run's arguments.
fn out_of<'a>(args: &[&'a str]) -> &'a str {
    args[args.iter().position(|a| *a == "--out").unwrap() + 1]
}

fn contents(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_run_killed_at_any_moment_leaves_no_half_written_file_and_resumes_to_the_end() {
    let scratch = fresh_dir("kills");
    let dir = scratch.path();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    make_world(dir);
    ok(&["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "6", "--out", "s.jsonl"], dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    // An earlier output of the same kind, next to the ones being killed: it must stay as it is.
    ok(&["sft", "--model", sft, "--demos", "world/demos.jsonl", "--steps", "2", "--lora-rank", "4", "--out", "earlier"], dir);
    let inputs: Vec<PathBuf> =
        ["s.jsonl", "r.jsonl", "world/demos.jsonl", "earlier/adapter/adapter_model.safetensors"].iter().map(|p| dir.join(p)).collect();
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| contents(p)).collect();

    // (what is written, the run, whether it resumes): each run saves at every step.
    let kinds: [(&str, Vec<&str>, bool); 5] = [
        (
            "a full SFT (checkpoints, the merged model)",
            vec!["sft", "--model", sft, "--demos", "world/demos.jsonl", "--steps", "6", "--save-every", "1", "--out", "full"],
            true,
        ),
        ("a LoRA SFT (checkpoints, the adapter)", lora_sft(sft, "6", "lora"), true),
        (
            "a LoRA DPO (checkpoints, the adapter)",
            vec![
                "dpo",
                "--policy",
                sft,
                "--rankings",
                "r.jsonl",
                "--epochs",
                "3",
                "--batch",
                "1",
                "--save-every",
                "1",
                "--lora-rank",
                "4",
                "--out",
                "dpo",
            ],
            true,
        ),
        (
            "samples",
            vec![
                "sample",
                "--model",
                sft,
                "--prompts",
                "world/prompts.jsonl",
                "-k",
                "3",
                "--max-new-tokens",
                "6",
                "--out",
                "s2.jsonl",
                "--overwrite",
            ],
            false,
        ),
        ("rankings", vec!["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r2.jsonl", "--overwrite"], false),
    ];
    // How long each runs whole: kills land anywhere in that span.
    let spans: Vec<Duration> = kinds
        .iter()
        .map(|(_, args, _)| {
            let start = Instant::now();
            ok(args, dir);
            start.elapsed()
        })
        .collect();
    for (_, args, _) in &kinds {
        let out = out_of(args);
        let path = dir.join(out);
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(46);
    // A run killed is resumed (or re-run); one that ended is started afresh, to be killed again.
    let mut ended = [true; 5];
    let mut killed = 0;
    for kill in 0..50 {
        let k = kill % kinds.len();
        let (what, args, resumes) = &kinds[k];
        let mut args = args.clone();
        let out = dir.join(out_of(&args));
        if *resumes && !ended[k] {
            args.push("--resume");
        } else if *resumes {
            let _ = std::fs::remove_dir_all(&out);
        }
        // Half the kills come at any moment, half in the middle of a write.
        let at = spans[k].mul_f64(rng.random_range(0.05..1.0));
        let when = if kill % 2 == 0 { Kill::After(at) } else { Kill::AtAWrite { from: at / 2 } };
        ended[k] = !run_and_kill(&args, dir, &out, when, spans[k] * 3);
        killed += usize::from(!ended[k]);
        check_whole(dir, what);
    }
    // Most runs were cut (the rest ended before their kill came): the loop tested kills.
    assert!(killed >= 35, "only {killed} of 50 runs were killed");

    for (k, (what, args, resumes)) in kinds.iter().enumerate() {
        let mut args = args.clone();
        if *resumes && !ended[k] {
            args.push("--resume");
        } else if *resumes {
            let out = out_of(&args);
            let _ = std::fs::remove_dir_all(dir.join(out));
        }
        let out = tinyrlhf(&args, dir);
        assert!(out.status.success(), "{what}: the run after the kills failed:\n{}", String::from_utf8_lossy(&out.stderr));
        check_whole(dir, what);
    }
    // After every kill and resume, each step's metrics line is there once, in order.
    for (model, steps) in [("full", Some(6)), ("lora", Some(6)), ("dpo", None)] {
        let text = std::fs::read_to_string(dir.join(model).join("metrics.jsonl")).unwrap();
        let logged: Vec<u64> =
            text.lines().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["step"].as_u64().unwrap()).collect();
        assert_eq!(logged, (1..=logged.len() as u64).collect::<Vec<_>>(), "{model}/metrics.jsonl after the kills");
        let manifest: serde_json::Value = serde_json::from_slice(&contents(&dir.join(model).join("manifest.json"))).unwrap();
        let done = steps.or(manifest["steps"].as_u64()).unwrap();
        assert_eq!(logged.len() as u64, done, "{model}: one line for each of its {done} steps");
    }
    // What the runs made is whole and loads: the merged model and both adapters sample.
    for model in ["full", "lora", "dpo"] {
        ok(
            &[
                "sample",
                "--model",
                model,
                "--prompts",
                "world/heldout.jsonl",
                "--max-new-tokens",
                "3",
                "--out",
                "check.jsonl",
                "--overwrite",
            ],
            dir,
        );
    }
    let after: Vec<Vec<u8>> = inputs.iter().map(|p| contents(p)).collect();
    assert!(before == after, "an earlier output or an input changed under the kills");
    std::fs::remove_dir_all(dir).ok();
}

/// The bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut files = vec![];
    sizes(dir, &mut files);
    files.iter().map(|(_, size)| size).sum()
}

#[test]
fn a_full_disk_is_refused_naming_the_file_and_the_last_checkpoint_stays_loadable() {
    let scratch = fresh_dir("full-disk");
    let dir = scratch.path();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    make_world(dir);
    let run = |out: &str, steps: &str| tinyrlhf(&lora_sft(sft, steps, out), dir);
    // A disk that holds a run after its first save, and not much more: the second save (a new
    // checkpoint is written whole before the old one goes) runs out of room.
    assert!(run("probe", "1").status.success());
    let room = bytes_under(&dir.join("probe")) + bytes_under(&dir.join("probe/checkpoint")) / 2;
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={room}"), "tmpfs"]).arg(&disk).status();
    if !mounted.is_ok_and(|s| s.success()) {
        // CI runs as root; elsewhere a tmpfs cannot be mounted and there is no full disk to test.
        eprintln!("skipped: mounting a {room}-byte tmpfs needs root");
        return;
    }
    let out = run("disk/run", "6");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let saved = dir.join("saved");
    let copied = Command::new("cp").arg("-r").arg(disk.join("run")).arg(&saved).status();
    Command::new("umount").arg(&disk).status().unwrap();
    assert_eq!(out.status.code(), Some(1), "a full disk should end the run with an error:\n{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("disk/run/"),
        "the error should say the disk is full and name the file:\n{stderr}"
    );
    // What was saved before the disk filled is whole, and the run continues from it elsewhere.
    assert!(copied.unwrap().success());
    check_whole(&saved, "a full disk");
    let resumed = ok(&[lora_sft(sft, "6", "saved"), vec!["--resume"]].concat(), dir);
    assert!(resumed.contains("resum"), "the saved run should resume from its checkpoint:\n{resumed}");
    std::fs::remove_dir_all(dir).ok();
}
