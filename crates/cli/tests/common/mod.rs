//! What the CLI's test binaries share: running `tinyrlhf` in a folder, and a fresh folder per test.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn tinyrlhf(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrlhf")).args(args).current_dir(dir).output().expect("the binary runs")
}

/// Runs `tinyrlhf`, which must succeed; its stdout and stderr.
pub fn ok(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tinyrlhf {args:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

/// Runs `tinyrlhf`, which must refuse with exit 1; its stderr.
pub fn refused(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "tinyrlhf {args:?} should have been refused:\n{stderr}");
    stderr
}

/// Owned arguments as `tinyrlhf`'s.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Rankings of a tuned model's answers, as the interop tests start: a small world in `dir/world`,
/// `fixture` tuned on its demonstrations into `dir/sft`, three answers to each of its 40 prompts
/// ranked by the concise labeler into `dir/rankings.jsonl`.
pub fn ranked_sft(fixture: &Path, dir: &Path) {
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "200", "--prompts", "40", "--heldout", "12"], dir);
    ok(
        &["sft", "--model", fixture.to_str().unwrap(), "--demos", "world/demos.jsonl", "--steps", "10", "--batch", "8", "--out", "sft"],
        dir,
    );
    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "8", "--out", "samples.jsonl"],
        dir,
    );
    ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], dir);
}

/// An empty folder for one test, named by it, removed when the returned handle is dropped (at the
/// test's end, passed or failed).
pub fn fresh_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("tinyrlhf-cli-{name}-")).tempdir().expect("a scratch folder")
}

/// The shipped SFT model's folder.
pub fn shipped_sft() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/public/models/sft")
}

/// A fresh folder with a small world (`world/`), rankings of the shipped SFT model's answers
/// (`r.jsonl`) and a reward model trained on them (`rm/`).
pub fn world_rankings_and_reward_model(name: &str) -> tempfile::TempDir {
    let scratch = fresh_dir(name);
    let dir = scratch.path();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "20", "--prompts", "6", "--heldout", "4"], dir);
    ok(&["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "4", "--out", "s.jsonl"], dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    ok(&["reward", "--model", sft, "--rankings", "r.jsonl", "--epochs", "1", "--out", "rm"], dir);
    scratch
}
