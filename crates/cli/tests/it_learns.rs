//! RLHF works end to end, through the CLI with its default settings, on the shipped tiny SFT model:
//! a scripted labeler ranks K=4 samples for 30 prompts; the reward model trained on those rankings
//! reaches >= 75% pair accuracy on held-out prompts; PPO then makes the policy win >= 75% of blind
//! comparisons against the SFT model on held-out prompts (ties half), with EOS rate >= 90% and a
//! bounded KL to the reference. Done for two labelers with opposite tastes (short answers versus
//! excited, longer ones). Run with `--nocapture` to see the reward and KL curves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tinyrlhf(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrlhf")).args(args).current_dir(dir).output().expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tinyrlhf {args:?} failed:\n{text}");
    text
}

fn shipped_sft() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../www/public/models/sft")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Lines `range` of a JSONL file, written to `to`.
fn slice_lines(from: &Path, range: std::ops::Range<usize>, to: &Path) {
    let text = std::fs::read_to_string(from).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(to, lines[range].join("\n") + "\n").unwrap();
}

fn rlhf_learns(labeler: &str) {
    let dir = std::env::temp_dir().join(format!("tinyrlhf-learns-{labeler}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    let started = std::time::Instant::now();

    tinyrlhf(&["data", "--out", "world", "--pretrain-lines", "10", "--demos", "10"], &dir);
    slice_lines(&dir.join("world/prompts.jsonl"), 0..30, &dir.join("rank-prompts.jsonl"));
    slice_lines(&dir.join("world/heldout.jsonl"), 0..40, &dir.join("rm-heldout-prompts.jsonl"));
    slice_lines(&dir.join("world/heldout.jsonl"), 40..200, &dir.join("eval-prompts.jsonl"));

    // 1. The labeler ranks K=4 SFT samples for 30 training prompts (and, for measuring the reward
    //    model, for 40 held-out prompts).
    tinyrlhf(&["sample", "--model", sft, "--prompts", "rank-prompts.jsonl", "-k", "4", "--out", "samples.jsonl"], &dir);
    tinyrlhf(
        &["sample", "--model", sft, "--prompts", "rm-heldout-prompts.jsonl", "-k", "4", "--seed", "7", "--out", "heldout-samples.jsonl"],
        &dir,
    );
    tinyrlhf(&["rank", "--samples", "samples.jsonl", "--labeler", labeler, "--out", "rankings.jsonl"], &dir);
    tinyrlhf(&["rank", "--samples", "heldout-samples.jsonl", "--labeler", labeler, "--out", "heldout-rankings.jsonl"], &dir);

    // 2. Reward model.
    tinyrlhf(&["reward", "--model", sft, "--rankings", "rankings.jsonl", "--held-out", "heldout-rankings.jsonl", "--out", "rm"], &dir);
    let rm = json(&dir.join("rm/manifest.json"));
    let accuracy = rm["held_out"]["accuracy"].as_f64().unwrap();

    // 3. PPO, then the blind comparison on prompts neither stage has seen.
    tinyrlhf(&["ppo", "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", "policy"], &dir);
    tinyrlhf(
        &[
            "eval",
            "--policy",
            "policy",
            "--reference",
            sft,
            "--prompts",
            "eval-prompts.jsonl",
            "--labeler",
            labeler,
            "-k",
            "2",
            "--json",
            "compare.json",
        ],
        &dir,
    );
    let report = json(&dir.join("compare.json"));
    let (win_rate, kl, eos) = (report["win_rate"].as_f64().unwrap(), report["kl"].as_f64().unwrap(), report["eos_rate"].as_f64().unwrap());

    let curve: Vec<String> = std::fs::read_to_string(dir.join("policy/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}: score {:+.2} KL {:.2}", m["iteration"], m["score"].as_f64().unwrap(), m["kl"].as_f64().unwrap())
        })
        .collect();
    println!(
        "{labeler}: reward model held-out pair accuracy {:.1}%; win-rate {:.1}%, KL {kl:.2} nats, EOS {:.1}% ({:.0} s)\n  {}",
        100.0 * accuracy,
        100.0 * win_rate,
        100.0 * eos,
        started.elapsed().as_secs_f64(),
        curve.join("\n  ")
    );
    assert!(accuracy >= 0.75, "{labeler}: reward model held-out pair accuracy {accuracy}");
    assert!(win_rate >= 0.75, "{labeler}: win-rate over SFT {win_rate}");
    assert!(eos >= 0.9, "{labeler}: EOS rate {eos}");
    assert!(kl.is_finite() && kl < 10.0, "{labeler}: KL to the reference {kl}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn rlhf_with_a_concise_labeler_makes_answers_it_prefers() {
    rlhf_learns("concise");
}

#[test]
fn rlhf_with_an_enthusiastic_labeler_makes_answers_it_prefers() {
    rlhf_learns("enthusiastic");
}
