//! A `--resume` continues only the run it was started as: another model, other data or other
//! settings are refused naming each difference (a resume on a smaller rankings file used to stop
//! early and print "done"; one on another model's folder panicked); the step count is applied, and
//! said.

mod common;

use common::{fresh_dir, ok, refused, strs};

#[test]
fn a_resume_on_another_model_other_data_or_other_settings_is_refused_naming_the_difference() {
    let scratch = fresh_dir("resume");
    let dir = scratch.path();
    let sft = common::shipped_sft();
    let base = sft.with_file_name("base");
    let (sft, base) = (sft.to_str().unwrap(), base.to_str().unwrap());
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "20", "--prompts", "6", "--heldout", "4"], dir);
    let demos = std::fs::read_to_string(dir.join("world/demos.jsonl")).unwrap();
    std::fs::write(dir.join("fewer.jsonl"), demos.lines().take(5).map(|l| format!("{l}\n")).collect::<String>()).unwrap();

    let sft_run = |model: &str, demos: &str, extra: &[&str]| -> Vec<String> {
        let steps = if extra.contains(&"--steps") { &[][..] } else { &["--steps", "2"][..] };
        let args = [&["sft", "--model", model, "--demos", demos, "--batch", "2", "--save-every", "1", "--out", "run"][..], steps].concat();
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    ok(&strs(&sft_run(sft, "world/demos.jsonl", &[])), dir);
    let checkpoint = dir.join("run/checkpoint/trainer.json");
    let before = std::fs::read(&checkpoint).unwrap();

    let another_model = refused(&strs(&sft_run(base, "world/demos.jsonl", &["--resume"])), dir);
    assert!(another_model.contains("the model (") && another_model.contains("is not the one the run started on"), "{another_model}");
    let other_data = refused(&strs(&sft_run(sft, "fewer.jsonl", &["--resume"])), dir);
    assert!(other_data.contains("the demonstrations (fewer.jsonl)"), "{other_data}");
    let other_settings = refused(&strs(&sft_run(sft, "world/demos.jsonl", &["--resume", "--lr", "0.5", "--lora-rank", "4"])), dir);
    assert!(other_settings.contains("lr was 0.001, now 0.5") && other_settings.contains("lora was null, now {"), "{other_settings}");
    assert!(other_settings.contains("--overwrite"), "{other_settings}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before, "a refused resume leaves the checkpoint as it was");

    let longer = ok(&strs(&sft_run(sft, "world/demos.jsonl", &["--resume", "--steps", "3"])), dir);
    assert!(longer.contains("note: steps is now 3 (the run started with 2)") && longer.contains("resuming"), "{longer}");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(state["step"], 3);
    // A corrupt checkpoint is named by its path, not only by what is wrong inside it.
    std::fs::write(dir.join("run/checkpoint/model.safetensors"), b"not safetensors").unwrap();
    let corrupt = refused(&strs(&sft_run(sft, "world/demos.jsonl", &["--resume", "--steps", "3"])), dir);
    assert!(corrupt.contains(&format!("{}: ", std::path::Path::new("run").join("checkpoint").display())), "{corrupt}");

    // DPO on a smaller rankings file: refused, where it used to stop early and print "done".
    ok(&["sample", "--model", sft, "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "4", "--out", "s.jsonl"], dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    let rankings = std::fs::read_to_string(dir.join("r.jsonl")).unwrap();
    std::fs::write(dir.join("r2.jsonl"), rankings.lines().take(3).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let dpo = |rankings: &str, extra: &[&str]| -> Vec<String> {
        let args = ["dpo", "--policy", sft, "--rankings", rankings, "--epochs", "1", "--batch", "2", "--save-every", "1", "--out", "dpo"];
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    ok(&strs(&dpo("r.jsonl", &[])), dir);
    let smaller = refused(&strs(&dpo("r2.jsonl", &["--resume"])), dir);
    assert!(smaller.contains("the rankings (r2.jsonl) is not the one the run started on (r.jsonl)"), "{smaller}");
    std::fs::remove_dir_all(dir).ok();
}
