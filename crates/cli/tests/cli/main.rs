//! The `tinyrlhf` binary as a user runs it, one test binary in files by concern.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod folders;
mod pipeline;
mod refusals;

use std::path::Path;

use common::{ok, tinyrlhf};

fn world(dir: &Path) {
    ok(&["data", "--out", "world", "--pretrain-lines", "600", "--demos", "600", "--prompts", "40", "--heldout", "12"], dir);
    ok(&["tokenizer", "--corpus", "world/pretrain.txt", "--demos", "world/demos.jsonl", "--vocab", "400", "--out", "tok.json"], dir);
}

/// The smallest PPO run from `sft` against `rm`: batch 4 of 6-token answers.
fn small_ppo<'a>(prompts: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["ppo", "--policy", "sft", "--reward", "rm", "--prompts", prompts, "--out", out];
    args.extend(["--batch", "4", "--minibatch", "2", "--max-new-tokens", "6"]);
    args
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    assert!(!out.status.success(), "tinyrlhf {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
