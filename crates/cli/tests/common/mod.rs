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

/// An empty folder for one test, named by it, removed when the returned handle is dropped (at the
/// test's end, passed or failed).
pub fn fresh_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("tinyrlhf-cli-{name}-")).tempdir().expect("a scratch folder")
}

/// The shipped SFT model's folder.
pub fn shipped_sft() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/public/models/sft")
}
