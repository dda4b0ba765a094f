//! An adapter goes only on the base it was trained on: each records its base's identity (the
//! weights' digest), and a folder whose base was replaced by another model of the same shape is
//! refused naming both (on it the adapter computes nonsense), unless `--allow-other-base`; a
//! `--resume` checks the base behind a LoRA `--policy` too, and an `adapter_config.json` edited to
//! say something else about the adapter is refused naming that file.

mod common;

use std::path::Path;

use common::{fresh_dir, ok, refused, shipped_sft, tinyrlhf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn an_adapter_on_a_replaced_base_is_refused_naming_both_and_resume_checks_the_base_behind_a_lora_policy() {
    let scratch = fresh_dir("adapters");
    let dir = scratch.path();
    let sft = shipped_sft();
    // The base the adapter is trained on, in a folder this test may replace.
    copy_dir(&sft, &dir.join("base"));
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "16", "--prompts", "4", "--heldout", "3"], dir);
    let sample = |model: &str, extra: &[&str]| -> Vec<String> {
        let args =
            ["sample", "--model", model, "--prompts", "world/heldout.jsonl", "--max-new-tokens", "3", "--out", "s.jsonl", "--overwrite"];
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);
    let refuse = |args: Vec<String>| refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);

    ok(&["sft", "--model", "base", "--demos", "world/demos.jsonl", "--steps", "2", "--lora-rank", "4", "--out", "lora"], dir);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("lora/manifest.json")).unwrap()).unwrap();
    assert!(manifest["base_identity"].as_str().is_some_and(|id| id.starts_with("xxh3-128:")), "{manifest}");
    run(sample("lora", &[]));
    // A DPO run on the LoRA folder, its checkpoint kept for --resume.
    ok(&["sample", "--model", "lora", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "4", "--out", "k.jsonl"], dir);
    ok(&["rank", "--samples", "k.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    let dpo = |extra: &[&str]| -> Vec<String> {
        let args =
            ["dpo", "--policy", "lora", "--rankings", "r.jsonl", "--epochs", "1", "--batch", "1", "--save-every", "1", "--out", "dpo"];
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    run(dpo(&[]));

    // The base replaced by another model of the same shape (the shipped pretrained one).
    std::fs::copy(sft.with_file_name("base").join("model.safetensors"), dir.join("base/model.safetensors")).unwrap();
    let on_other = refuse(sample("lora", &[]));
    assert!(on_other.contains("lora") && on_other.contains("base"), "names the adapter's folder and the base: {on_other}");
    assert!(on_other.contains("trained on a base whose weights are xxh3-128:"), "{on_other}");
    assert!(on_other.contains("--allow-other-base"), "says the way out: {on_other}");
    run(sample("lora", &["--allow-other-base"]));
    // Resumed on it: the policy's adapter refuses the base, and with --allow-other-base the run's
    // record does (its digest of the policy covers the base behind it).
    let resumed = refuse(dpo(&["--resume"]));
    assert!(resumed.contains("trained on a base whose weights are"), "{resumed}");
    let resumed = refuse(dpo(&["--resume", "--allow-other-base"]));
    assert!(resumed.contains("the policy (lora) is not the one the run started on"), "{resumed}");

    // The base back: the adapter loads again; then its config edited to name other modules.
    copy_dir(&sft, &dir.join("base"));
    run(sample("lora", &[]));
    let config_path = dir.join("lora/adapter/adapter_config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["target_modules"] = serde_json::json!(["c_attn"]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let edited = refuse(sample("lora", &[]));
    assert!(edited.contains("adapter/adapter_config.json: target_modules is [\"c_attn\"]"), "{edited}");
}

#[test]
fn devices_fifos_endless_lines_and_counts_past_the_limits_are_refused_without_crashing() {
    let scratch = fresh_dir("bounds");
    let dir = scratch.path();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    let code = |args: &[&str]| {
        let out = tinyrlhf(args, dir);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let sample =
        |prompts: &str| code(&["sample", "--model", sft, "--prompts", prompts, "--max-new-tokens", "2", "--out", "s.jsonl", "--overwrite"]);

    let (status, zero) = sample("/dev/zero");
    assert_eq!(status, Some(1), "{zero}");
    assert!(zero.contains("/dev/zero is not a regular file"), "{zero}");
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (status, fifo) = sample(fifo.to_str().unwrap());
    assert_eq!(status, Some(1), "a FIFO with no writer is refused, not waited on: {fifo}");
    assert!(fifo.contains("not a regular file"), "{fifo}");

    // A prompt of 2 MiB on one line: refused naming the file and the line.
    std::fs::write(dir.join("long.txt"), "word ".repeat(2 << 19)).unwrap();
    let (status, long) = sample("long.txt");
    assert_eq!(status, Some(1), "{long}");
    assert!(long.contains("long.txt:1:") && long.contains("lines of at most 1024 KiB"), "{long}");
    // A prompt longer than the context but under the line limit: cut, said in a short note.
    std::fs::write(dir.join("cut.txt"), "the cat sat on the mat ".repeat(4000)).unwrap();
    let (status, cut) = sample("cut.txt");
    assert_eq!(status, Some(0), "{cut}");
    assert!(cut.contains("was cut from the left") && cut.len() < 4_000, "the note quotes an excerpt: {} bytes", cut.len());

    // An endless stdin without newlines ends the chat with a message.
    let chat = std::process::Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(["chat", "--model", sft])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&chat.stderr);
    assert_eq!(chat.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("standard input: a line of more than 1 MiB"), "{stderr}");

    // Counts past what can be made or held: refused by the flags' parser (exit 2), naming the limit.
    for flag in ["--demos", "--prompts", "--heldout", "--pretrain-lines"] {
        let (status, message) = code(&["data", "--out", "world", flag, "18446744073709551615"]);
        assert_eq!(status, Some(2), "{flag}: {message}");
        assert!(message.contains("must be at most"), "{flag}: {message}");
    }
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "8", "--prompts", "4", "--heldout", "3"], dir);
    let (status, alpha) = code(&[
        "sft",
        "--model",
        sft,
        "--demos",
        "world/demos.jsonl",
        "--steps",
        "2",
        "--lora-rank",
        "8",
        "--lora-alpha",
        "1e308",
        "--out",
        "a",
    ]);
    assert_eq!(status, Some(1), "{alpha}");
    assert!(alpha.contains("LoRA alpha 1e308 over rank 8"), "{alpha}");
    assert!(!dir.join("a").exists(), "a refused run leaves no folder");
}
