//! Bad input is refused with what and where (file, line, field, flag) before anything is written.

use std::process::Command;

use super::common::{self, fresh_dir, ok, tinyrlhf};
use super::{fails, world};

#[test]
fn malformed_jsonl_is_refused_naming_file_line_and_field_and_nothing_is_written() {
    let scratch = fresh_dir("malformed");
    let dir = scratch.path();
    world(dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "2",
            "--batch",
            "2",
            "--out",
            "base",
        ],
        dir,
    );
    std::fs::write(dir.join("bad.jsonl"), "{\"prompt\":\"hi\",\"response\":\"hello\"}\n{\"prompt\":\"hi\"}\n").unwrap();
    let out = tinyrlhf(&["sft", "--model", "base", "--demos", "bad.jsonl", "--steps", "2", "--out", "sft"], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.jsonl:2: field `response`: missing"), "{stderr}");
    assert!(!dir.join("sft").exists(), "nothing may be written");

    std::fs::write(dir.join("broken.json"), "{ not a tokenizer").unwrap();
    let out = tinyrlhf(&["pretrain", "--tokenizer", "broken.json", "--corpus", "world/pretrain.txt", "--steps", "2", "--out", "x"], dir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.json"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_rankings_and_mismatched_reward_models_are_refused_before_training() {
    let scratch = fresh_dir("badrlhf");
    let dir = scratch.path();
    world(dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "2",
            "--batch",
            "2",
            "--out",
            "sft",
        ],
        dir,
    );
    let good = r#"{"prompt":"hi","completions":["hello.","hi there, friend."],"ranking":[0,1]}"#;
    let cases = [
        (r#"{"prompt":"hi","completions":["a","b","c"],"ranking":[0,0,1]}"#, "field `ranking`: index 0 appears twice"),
        (r#"{"prompt":"hi","completions":["a"],"ranking":[0]}"#, "field `completions`: a ranking needs at least 2 completions, found 1"),
        (r#"{"prompt":"hi","completions":["a","b","c"],"ranking":[1,0]}"#, "field `ranking`: ranks 2 completions but there are 3"),
        (r#"{"prompt":"hi","completions":["a","a"],"ranking":[1,0]}"#, "field `completions`: completions 0 and 1 are the same text"),
        // 2^32 + 1 would alias to 1 where usize is 32 bits (the page's wasm32).
        (r#"{"prompt":"hi","completions":["a","b"],"ranking":[0,4294967297]}"#, "field `ranking`: index 4294967297"),
    ];
    for (line, message) in cases {
        std::fs::write(dir.join("bad.jsonl"), format!("{good}\n{line}\n")).unwrap();
        let stderr = fails(&["reward", "--model", "sft", "--rankings", "bad.jsonl", "--out", "rm"], dir);
        assert!(stderr.contains(&format!("bad.jsonl:2: {message}")), "{stderr}");
        assert!(!dir.join("rm").exists(), "nothing may be written");
    }

    std::fs::write(dir.join("latin1.jsonl"), [good.as_bytes(), b"\n{\"prompt\":\"caf\xe9\"}\n"].concat()).unwrap();
    let stderr = fails(&["reward", "--model", "sft", "--rankings", "latin1.jsonl", "--out", "rm"], dir);
    assert!(stderr.contains("latin1.jsonl:2: not valid UTF-8"), "{stderr}");

    // A reward model from another tokenizer, and one of another size.
    std::fs::write(dir.join("pairs.jsonl"), r#"{"prompt":"hi","chosen":"hello.","rejected":"go away."}"#.to_owned() + "\n").unwrap();
    ok(&["tokenizer", "--corpus", "world/pretrain.txt", "--demos", "world/demos.jsonl", "--vocab", "350", "--out", "tok2.json"], dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok2.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            "other",
        ],
        dir,
    );
    ok(&["reward", "--model", "other", "--rankings", "pairs.jsonl", "--epochs", "1", "--out", "rm-other"], dir);
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm-other", "--prompts", "world/prompts.jsonl", "--out", "p"], dir);
    assert!(stderr.contains("another tokenizer"), "{stderr}");
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--preset",
            "small",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            "big",
        ],
        dir,
    );
    ok(&["reward", "--model", "big", "--rankings", "pairs.jsonl", "--epochs", "1", "--out", "rm-big"], dir);
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm-big", "--prompts", "world/prompts.jsonl", "--out", "p"], dir);
    assert!(stderr.contains("different size"), "{stderr}");
    assert!(!dir.join("p").exists(), "nothing may be written");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_zero_save_period_and_a_zero_kl_target_are_refused_with_a_message() {
    let scratch = fresh_dir("zeros");
    let dir = scratch.path();
    let stderr = fails(&["pretrain", "--tokenizer", "tok.json", "--corpus", "c.txt", "--save-every", "0", "--out", "base"], dir);
    assert!(stderr.contains("--save-every") && stderr.contains("must be at least 1"), "{stderr}");
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--save-every", "0", "--out", "p"], dir);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--kl-target", "0", "--out", "p"], dir);
    assert!(stderr.contains("kl_target = 0: a target KL must be above 0"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_gpu_backend_that_cannot_start_is_an_error_naming_it_and_the_cpu_way_out() {
    let scratch = fresh_dir("backend");
    let dir = scratch.path();
    // This test binary is built without the GPU features: the same path a missing driver takes.
    for backend in ["wgpu", "cuda"] {
        let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--backend", backend, "--out", "p"], dir);
        assert!(stderr.contains(&format!("--backend {backend}:")) && stderr.contains("`--backend cpu`"), "{stderr}");
        assert!(stderr.contains(&format!("--features {backend}")), "says how to build it: {stderr}");
        assert!(!dir.join("p").exists(), "nothing may be written");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sampling_more_answers_than_a_ranking_can_order_is_refused_before_loading_anything() {
    let scratch = fresh_dir("sample-k");
    let dir = scratch.path();
    let stderr = fails(&["sample", "--model", "no-model", "--prompts", "p.jsonl", "-k", "12", "--out", "s.jsonl"], dir);
    assert!(stderr.contains("-k = 12") && stderr.contains("a ranking orders at most 9"), "{stderr}");
    assert!(!dir.join("s.jsonl").exists(), "nothing may be written");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn chat_says_a_line_is_not_utf8_and_answers_the_next() {
    use std::io::Write;
    let shipped = common::shipped_sft();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(["chat", "--model", shipped.to_str().unwrap(), "--max-new-tokens", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi \xff there\nlist two animals.\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("that line is not UTF-8 text (byte 4)"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "one answer, to the second line");
}
