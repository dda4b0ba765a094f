//! Nothing overwritten, nothing interleaved: a run's `--out` never replaces what it reads or a file
//! a person made, a model folder holding something else needs `--overwrite` (which clears only our
//! files), a symlink or device `--out` is written through, and two runs on one folder are refused.
//! The commands are the ones that used to destroy inputs.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fresh_dir, ok, tinyrlhf};

fn fails(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    assert_eq!(out.status.code(), Some(1), "tinyrlhf {args:?} should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shipped SFT model (a finished run's folder) copied into `dir/sft`.
fn sft(dir: &Path) {
    let shipped = common::shipped_sft();
    std::fs::create_dir_all(dir.join("sft")).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(shipped.join(name), dir.join("sft").join(name)).unwrap();
    }
}

fn args(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// The shipped SFT model in `dir/sft` and a small instruction world in `dir/world`.
fn sft_and_world(dir: &Path, demos: &str) {
    sft(dir);
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", demos, "--prompts", "6", "--heldout", "4"], dir);
}

fn snapshot(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn training_never_writes_over_its_inputs_or_a_folder_of_other_files() {
    let scratch = fresh_dir("train");
    let dir = scratch.path();
    sft_and_world(dir, "20");
    ok(&["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "4", "--out", "s.jsonl"], dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    let weights = snapshot(&dir.join("sft/model.safetensors"));

    // The SFT reference as the policy's output, the model as the reward model's: always refused.
    let message = fails(&["dpo", "--policy", "sft", "--rankings", "r.jsonl", "--out", "sft", "--overwrite"], dir);
    assert!(message.contains("--out sft is sft, which this command reads"), "{message}");
    let message = fails(&["reward", "--model", "sft", "--rankings", "r.jsonl", "--out", "./sft/"], dir);
    assert!(message.contains("which this command reads"), "{message}");
    assert_eq!(snapshot(&dir.join("sft/model.safetensors")), weights, "the input is untouched");
    // A LoRA run's folder is read with its base: writing over that base is refused too.
    ok(&["dpo", "--policy", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--lora-rank", "2", "--out", "lora"], dir);
    let message = fails(&["dpo", "--policy", "lora", "--rankings", "r.jsonl", "--out", "sft", "--overwrite"], dir);
    assert!(message.contains("which this command reads"), "{message}");
    assert_eq!(snapshot(&dir.join("sft/model.safetensors")), weights, "the base is untouched");

    // A finished reward model is not replaced by a second run without --overwrite.
    ok(&["reward", "--model", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--out", "rm"], dir);
    let message = fails(&["reward", "--model", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--out", "rm"], dir);
    assert!(message.contains("--out rm is not empty") && message.contains("--overwrite"), "{message}");
    ok(&["reward", "--model", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--out", "rm", "--overwrite"], dir);

    // A folder with another model's template: --overwrite removes it, so the new one wins.
    std::fs::create_dir_all(dir.join("old")).unwrap();
    std::fs::write(dir.join("old/chat_template.jinja"), "{{ 'stale' }}").unwrap();
    std::fs::write(dir.join("old/notes.txt"), "mine").unwrap();
    let message = fails(&["dpo", "--policy", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--out", "old"], dir);
    assert!(message.contains("not empty (chat_template.jinja, notes.txt)"), "{message}");
    ok(&["dpo", "--policy", "sft", "--rankings", "r.jsonl", "--epochs", "1", "--out", "old", "--overwrite"], dir);
    assert!(!dir.join("old/chat_template.jinja").exists(), "the stale template is gone");
    assert_eq!(std::fs::read_to_string(dir.join("old/notes.txt")).unwrap(), "mine", "a stranger's file stays");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn files_given_as_out_are_never_replaced_unasked_and_devices_are_written_through() {
    let scratch = fresh_dir("files");
    let dir = scratch.path();
    sft_and_world(dir, "20");
    let sample = |out: &str| {
        ["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "2", "--max-new-tokens", "3", "--out", out]
            .map(str::to_owned)
    };

    let typed = "{\"prompt\":\"a\",\"completions\":[\"x\",\"y\"],\"ranking\":[1,0]}\n";
    std::fs::write(dir.join("typed.jsonl"), typed).unwrap();
    let message = fails(&args(&sample("typed.jsonl")), dir);
    assert!(message.contains("--out typed.jsonl exists") && message.contains("--overwrite"), "{message}");
    assert_eq!(std::fs::read_to_string(dir.join("typed.jsonl")).unwrap(), typed, "hand-typed rankings kept");

    let message =
        fails(&["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "--out", "world/prompts.jsonl", "--overwrite"], dir);
    assert!(message.contains("which this command reads"), "{message}");
    let message =
        fails(&["eval", "--model", "sft", "--prompts", "world/heldout.jsonl", "--json", "sft/model.safetensors", "--overwrite"], dir);
    assert!(message.contains("is a file of sft"), "{message}");
    let message = fails(&["data", "--out", "world"], dir);
    assert!(message.contains("--out world is not empty"), "{message}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        // A symlink is written through (its target gets the samples), a device stays a device.
        std::fs::write(dir.join("target.jsonl"), "").unwrap();
        std::os::unix::fs::symlink(dir.join("target.jsonl"), dir.join("link.jsonl")).unwrap();
        ok(&args(&sample("link.jsonl")), dir);
        assert!(std::fs::symlink_metadata(dir.join("link.jsonl")).unwrap().file_type().is_symlink());
        assert!(!std::fs::read_to_string(dir.join("target.jsonl")).unwrap().is_empty());
        ok(&args(&sample("/dev/null")), dir);
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null is still a device");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_second_run_on_the_same_out_is_refused_naming_the_process_that_holds_it() {
    let scratch = fresh_dir("lock");
    let dir = scratch.path();
    sft_and_world(dir, "200");
    let sft_args = ["sft", "--model", "sft", "--demos", "world/demos.jsonl", "--steps", "100000", "--save-every", "100000", "--out", "run"];
    let mut first = Command::new(env!("CARGO_BIN_EXE_tinyrlhf")).args(sft_args).current_dir(dir).spawn().unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(dir.join("run/.lock")).is_ok_and(|pid| pid == first.id().to_string()) {
        assert!(started.elapsed().as_secs() < 60, "the first run never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let message = fails(&[&sft_args[..], &["--resume"]].concat(), dir);
    assert!(message.contains(&format!("--out run is in use by another tinyrlhf run (process {})", first.id())), "{message}");
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_dir_all(dir).ok();
}
