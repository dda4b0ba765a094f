//! RLHF works end to end, through the CLI with its default settings, on the shipped tiny SFT model:
//! a scripted labeler ranks K=4 samples for 30 prompts; the reward model trained on those rankings
//! reaches >= 75% pair accuracy on held-out prompts; each method (PPO, GRPO and RLOO against that reward
//! model, DPO on the rankings themselves) then makes the policy win >= 75% of blind comparisons against the SFT
//! model on held-out prompts (ties half), with EOS rate >= 90% and a bounded KL to the reference.
//! The rankings and the reward model are made once per labeler and shared by the methods' tests.
//! Done for two labelers with opposite tastes (short answers versus excited, longer ones). Run with
//! `--nocapture` to see the curves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

/// One labeler's rankings and reward model, made once for all the methods' tests.
struct Prepared {
    dir: PathBuf,
    reward_accuracy: f64,
}

fn prepare(labeler: &str) -> Prepared {
    // In cargo's scratch space for integration tests (inside the target dir), one folder per
    // labeler replaced by every run: its ~100 MB of models do not pile up in the system's /tmp.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("learns-{labeler}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();

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

    // 2. Reward model (PPO's; DPO needs none).
    tinyrlhf(&["reward", "--model", sft, "--rankings", "rankings.jsonl", "--held-out", "heldout-rankings.jsonl", "--out", "rm"], &dir);
    let rm = json(&dir.join("rm/manifest.json"));
    let reward_accuracy = rm["held_out"]["accuracy"].as_f64().unwrap();
    println!("{labeler}: reward model held-out pair accuracy {:.1}%", 100.0 * reward_accuracy);
    assert!(reward_accuracy >= 0.75, "{labeler}: reward model held-out pair accuracy {reward_accuracy}");
    Prepared { dir, reward_accuracy }
}

fn prepared(labeler: &'static str) -> &'static Prepared {
    static CONCISE: OnceLock<Prepared> = OnceLock::new();
    static ENTHUSIASTIC: OnceLock<Prepared> = OnceLock::new();
    let cell = match labeler {
        "concise" => &CONCISE,
        "enthusiastic" => &ENTHUSIASTIC,
        other => panic!("no prepared rankings for {other}"),
    };
    cell.get_or_init(|| prepare(labeler))
}

/// Runs `method`'s CLI stage into `DIR/<method>`, then the blind comparison with SFT on prompts
/// no stage has seen; asserts the win-rate, EOS rate and KL.
fn method_learns(method: &str, labeler: &'static str) {
    method_learns_with(method, labeler, &[]);
}

/// [`method_learns`] with more flags for the stage (LoRA's), into `DIR/<method><flags>`.
fn method_learns_with(method: &str, labeler: &'static str, flags: &[&str]) {
    let prepared = prepared(labeler);
    assert!(prepared.reward_accuracy >= 0.75);
    let dir = &prepared.dir;
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    let started = std::time::Instant::now();
    let out = &format!("{method}{}", flags.concat());
    let stage = match method {
        "ppo" => vec!["ppo", "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", out],
        "dpo" => vec!["dpo", "--policy", sft, "--rankings", "rankings.jsonl", "--out", out],
        "grpo" | "rloo" => vec![method, "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", out],
        other => panic!("unknown method {other}"),
    };
    tinyrlhf(&[&stage, flags].concat(), dir);
    let seconds = started.elapsed().as_secs_f64();
    let compare = format!("compare-{out}.json");
    tinyrlhf(
        &[
            "eval",
            "--policy",
            out,
            "--reference",
            sft,
            "--prompts",
            "eval-prompts.jsonl",
            "--labeler",
            labeler,
            "-k",
            "2",
            "--json",
            &compare,
        ],
        dir,
    );
    let report = json(&dir.join(&compare));
    let (win_rate, kl, eos) = (report["win_rate"].as_f64().unwrap(), report["kl"].as_f64().unwrap(), report["eos_rate"].as_f64().unwrap());
    let curve: Vec<String> = std::fs::read_to_string(dir.join(out).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            match method {
                "ppo" | "grpo" | "rloo" => {
                    format!("{}: score {:+.2} KL {:.2}", m["iteration"], m["score"].as_f64().unwrap(), m["kl"].as_f64().unwrap())
                }
                _ => {
                    format!("{}: loss {:.3} margin {:+.3}", m["step"], m["loss"].as_f64().unwrap(), m["rewards/margins"].as_f64().unwrap())
                }
            }
        })
        .collect();
    println!(
        "{method} {} | {labeler} | win-rate {:.1}% | KL {kl:.2} nats | EOS {:.1}% | {seconds:.0} s\n  {}",
        flags.join(" "),
        100.0 * win_rate,
        100.0 * eos,
        curve.join("\n  ")
    );
    assert!(win_rate >= 0.75, "{method}, {labeler}: win-rate over SFT {win_rate}");
    assert!(eos >= 0.9, "{method}, {labeler}: EOS rate {eos}");
    assert!(kl.is_finite() && kl < 10.0, "{method}, {labeler}: KL to the reference {kl}");
}

#[test]
fn ppo_with_a_concise_labeler_makes_answers_it_prefers() {
    method_learns("ppo", "concise");
}

#[test]
fn dpo_with_a_concise_labeler_makes_answers_it_prefers() {
    method_learns("dpo", "concise");
}

#[test]
fn grpo_with_a_concise_labeler_makes_answers_it_prefers() {
    method_learns("grpo", "concise");
}

#[test]
fn rloo_with_a_concise_labeler_makes_answers_it_prefers() {
    method_learns("rloo", "concise");
}

#[test]
fn ppo_with_an_enthusiastic_labeler_makes_answers_it_prefers() {
    method_learns("ppo", "enthusiastic");
}

#[test]
fn dpo_with_an_enthusiastic_labeler_makes_answers_it_prefers() {
    method_learns("dpo", "enthusiastic");
}

#[test]
fn grpo_with_an_enthusiastic_labeler_makes_answers_it_prefers() {
    method_learns("grpo", "enthusiastic");
}

#[test]
fn rloo_with_an_enthusiastic_labeler_makes_answers_it_prefers() {
    method_learns("rloo", "enthusiastic");
}

/// LoRA (rank 8, alpha 16) also reaches 75%: PPO at ten times full training's learning rate;
/// DPO at five times, with a firmer leash (beta 0.2), since its KL to SFT climbs fast past that.
#[test]
fn ppo_with_lora_and_a_concise_labeler_makes_answers_it_prefers() {
    method_learns_with("ppo", "concise", &["--lora-rank", "8", "--lr", "5e-4"]);
}

#[test]
fn dpo_with_lora_and_a_concise_labeler_makes_answers_it_prefers() {
    method_learns_with("dpo", "concise", &["--lora-rank", "8", "--lr", "1.5e-3", "--beta", "0.2"]);
}
