//! Flags that used to do nothing, or nonsense, without a word are refused naming the setting:
//! zero iterations, a NaN divergence limit, an upper clip below the lower, a zero learning rate,
//! a temperature so small it overflows the logits, fewer samples than a figure needs; and sizes
//! past what the model or the machine can hold, refused before anything is allocated.

mod common;

use std::path::Path;

use common::tinyrlhf;

/// Refused with a message (exit 1 or clap's 2), never a crash.
fn refused(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    assert!(matches!(out.status.code(), Some(1 | 2)), "tinyrlhf {args:?} should have been refused: {:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn flags_that_would_do_nothing_nonsense_or_exhaust_memory_are_refused_naming_the_setting() {
    let scratch = common::world_rankings_and_reward_model("all");
    let dir = scratch.path();
    let sft = common::shipped_sft();
    let sft = sft.to_str().unwrap();
    let rl = |method: &str, extra: &[&str]| -> Vec<String> {
        [&[method, "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", "run"][..], extra]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (rl("ppo", &["--iterations", "0"]), "iterations = 0"),
        (rl("ppo", &["--kl-limit", "NaN"]), "kl_limit = NaN"),
        (rl("grpo", &["--kl-limit", "NaN"]), "kl_limit = NaN"),
        (rl("grpo", &["--epsilon", "0.2", "--epsilon-high", "0.1"]), "epsilon_high = 0.1 is below epsilon = 0.2"),
        (["reward", "--model", sft, "--rankings", "r.jsonl", "--lr", "0", "--out", "rm0"].map(str::to_owned).to_vec(), "lr = 0"),
        (
            ["reward", "--model", sft, "--rankings", "r.jsonl", "--activation-budget-mib", "0", "--out", "rm0"].map(str::to_owned).to_vec(),
            "activation_budget_mib = 0: a backward pass needs at least 1 MiB",
        ),
        (
            ["dpo", "--policy", sft, "--rankings", "r.jsonl", "--activation-budget-mib", "0", "--out", "run"].map(str::to_owned).to_vec(),
            "activation_budget_mib = 0: a backward pass needs at least 1 MiB",
        ),
        (
            ["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "--temperature", "1e-38", "--out", "t.jsonl"]
                .map(str::to_owned)
                .to_vec(),
            "temperature 0.00000000000000000000000000000000000001 is too small",
        ),
        (
            ["eval", "--model", sft, "--prompts", "world/heldout.jsonl", "-k", "1"].map(str::to_owned).to_vec(),
            "-k 1: the EOS, length and rankable figures need at least 2",
        ),
        (["eval", "--model", sft, "--prompts", "world/heldout.jsonl", "-k", "0"].map(str::to_owned).to_vec(), "must be at least 1"),
        // Sizes: each used to abort on an allocation (exit 134) or run for minutes.
        (
            ["tokenizer", "--corpus", "world/pretrain.txt", "--demos", "world/demos.jsonl", "--vocab", "1000000000", "--out", "run"]
                .map(str::to_owned)
                .to_vec(),
            "vocabulary size 1000000000 is too large",
        ),
        (rl("ppo", &["--lora-rank", "100000"]), "LoRA rank 100000 is larger than this gpt2 model's narrowest adapted matrix (128)"),
        (rl("grpo", &["--prompts-per-iteration", "100000"]), "GiB"),
        (rl("rloo", &["-k", "100000"]), "samples_per_prompt (K) = 100000: answers per prompt must be 1 to 64"),
        (rl("ppo", &["--max-new-tokens", "124"]), "leaves no room for the prompt: the model's context is 128 tokens"),
        (rl("grpo", &["--max-new-tokens", "18446744073709551615"]), "leaves no room for the prompt"),
        (rl("rloo", &["--lora-rank", "4", "--lora-alpha", "1e308"]), "LoRA alpha 1e308 over rank 4 scales the update by"),
        (["data", "--out", "run", "--demos", "18446744073709551615"].map(str::to_owned).to_vec(), "must be at most 200000"),
        (
            ["sft", "--model", sft, "--demos", "world/demos.jsonl", "--steps", "1", "--batch", "100000", "--out", "run"]
                .map(str::to_owned)
                .to_vec(),
            "a training step (100000 sequences of",
        ),
        (
            ["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "-k", "100000", "--out", "run"].map(str::to_owned).to_vec(),
            "-k = 100000: sample 1 to 9 answers per prompt to rank",
        ),
        (
            ["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "--max-new-tokens", "124", "--out", "run"]
                .map(str::to_owned)
                .to_vec(),
            "--max-new-tokens = 124 leaves no room for the prompt",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = refused(&args, dir);
        assert!(stderr.contains(message), "tinyrlhf {args:?}: expected {message:?} in:\n{stderr}");
        assert!(!dir.join("run").exists(), "tinyrlhf {args:?} wrote its output");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Random values for the numeric flags of every training and sampling command (a fixed seed; the
/// run lengths kept short so a run that is accepted also ends): each run is refused with a message
/// (exit 1 or clap's 2) or completes, never crashes (exit 101 on a panic, 134 on an allocation
/// abort), within a minute.
#[test]
fn random_numeric_flags_are_refused_with_a_message_or_run_never_crash() {
    use rand::{RngExt, SeedableRng};
    let scratch = common::world_rankings_and_reward_model("numeric");
    let dir = scratch.path();
    let sft = common::shipped_sft();
    let sft = sft.to_str().unwrap();
    let values = [
        "0",
        "1",
        "-1",
        "2",
        "7",
        "64",
        "65",
        "127",
        "100000",
        "1e30",
        "-1e30",
        "1e-38",
        "NaN",
        "inf",
        "-inf",
        "0.5",
        "3e-4",
        "18446744073709551615",
        "18446744073709551616",
    ];
    let commands: [(&[&str], &[&str]); 6] = [
        (&["data", "--out", "x"], &["--demos", "--prompts", "--heldout", "--pretrain-lines"]),
        (
            &["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "--out", "x.jsonl"],
            &["-k", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--batch"],
        ),
        (
            &["ppo", "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--iterations", "1", "--out", "x"],
            &[
                "--batch",
                "--minibatch",
                "--lr",
                "--kl-coef",
                "--temperature",
                "--max-new-tokens",
                "--lora-rank",
                "--lora-alpha",
                "--kl-limit",
            ],
        ),
        (
            &["grpo", "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--iterations", "1", "--out", "x"],
            &["--prompts-per-iteration", "-k", "--lr", "--beta", "--epsilon", "--temperature", "--max-new-tokens", "--lora-rank"],
        ),
        (
            &["dpo", "--policy", sft, "--rankings", "r.jsonl", "--epochs", "1", "--out", "x"],
            &["--batch", "--lr", "--beta", "--lora-rank", "--lora-alpha"],
        ),
        (
            &["sft", "--model", sft, "--demos", "world/demos.jsonl", "--steps", "2", "--out", "x"],
            &["--batch", "--lr", "--lora-rank", "--lora-alpha", "--save-every"],
        ),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(29);
    for case in 0..24 {
        let (base, flags) = commands[case % commands.len()];
        let mut args: Vec<&str> = base.to_vec();
        for _ in 0..2 {
            args.extend([flags[rng.random_range(0..flags.len())], values[rng.random_range(0..values.len())]]);
        }
        let _ = std::fs::remove_dir_all(dir.join("x"));
        let _ = std::fs::remove_file(dir.join("x.jsonl"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
            .args(&args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("tinyrlhf {args:?} ran past a minute");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap();
        match status.code() {
            Some(0) => {}
            Some(1 | 2) => assert!(stderr.contains("error"), "tinyrlhf {args:?} failed without a message:\n{stderr}"),
            other => panic!("tinyrlhf {args:?} crashed ({other:?}):\n{stderr}"),
        }
    }
    std::fs::remove_dir_all(dir).ok();
}
