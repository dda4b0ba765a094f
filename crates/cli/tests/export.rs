//! `tinyrlhf export --to trl` writes what TRL's command line reads, refuses what it cannot export
//! naming the file, and an adapter in PEFT's layout (as TRL saves it) whose base is a hub id
//! comes back with `--base`, answering as the run it came from. (TRL itself trains the export in
//! the opt-in `tests/trl.rs`.)

mod common;

use std::path::Path;

use common::{fresh_dir, ok, refused, shipped_sft, strs, tinyrlhf};

#[test]
fn an_export_holds_every_pair_and_each_methods_config_and_refuses_what_it_cannot_export() {
    let scratch = fresh_dir("export");
    let dir = scratch.path();
    let sft = shipped_sft();
    let sft = sft.to_str().unwrap();
    // Ten rankings of three answers: 30 pairs, every fifth ranking held out.
    let rankings: String = (0..10)
        .map(|i| {
            serde_json::json!({"prompt": format!("Question {i}?"), "completions": ["a", "b", "c"], "ranking": [2, 0, 1]}).to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.join("r.jsonl"), rankings).unwrap();
    std::fs::write(dir.join("d.jsonl"), "{\"prompt\": \"Say hi.\", \"response\": \"Hi.\"}\n").unwrap();
    ok(&["export", "--to", "trl", "--rankings", "r.jsonl", "--demos", "d.jsonl", "--model", sft, "--out", "x"], dir);
    let lines = |path: &str| std::fs::read_to_string(dir.join("x").join(path)).unwrap().lines().count();
    assert_eq!((lines("data/preferences/train.jsonl"), lines("data/preferences/test.jsonl")), (24, 6));
    assert_eq!((lines("data/prompts/train.jsonl"), lines("data/sft/train.jsonl")), (8, 1));
    let dpo = std::fs::read_to_string(dir.join("x/dpo.yaml")).unwrap();
    let absolute = Path::new(sft).canonicalize().unwrap();
    assert!(dpo.contains(&format!("model_name_or_path: {:?}", absolute.display().to_string())), "{dpo}");
    assert!(dpo.contains("eval_strategy: \"epoch\"") && dpo.contains("max_length: "), "{dpo}");
    for file in ["reward.yaml", "grpo.yaml", "rloo.yaml", "sft.yaml", "accelerate/one-gpu.yaml", "accelerate/multi-node-fsdp.yaml"] {
        assert!(dir.join("x").join(file).is_file(), "{file}");
    }

    // Again into the same folder: refused without --overwrite, which keeps what TRL wrote there.
    std::fs::create_dir_all(dir.join("x/runs/dpo")).unwrap();
    std::fs::write(dir.join("x/data/notes.txt"), "mine").unwrap();
    let again = ["export", "--rankings", "r.jsonl", "--model", "some/hub-model", "--out", "x"];
    assert!(refused(&again, dir).contains("--overwrite"));
    ok(&[&again[..], &["--overwrite"]].concat(), dir);
    assert!(dir.join("x/runs/dpo").is_dir() && !dir.join("x/sft.yaml").exists() && !dir.join("x/data/sft").exists());
    assert_eq!(std::fs::read_to_string(dir.join("x/data/notes.txt")).unwrap(), "mine", "--overwrite removes only what an export writes");
    assert!(std::fs::read_to_string(dir.join("x/dpo.yaml")).unwrap().contains("\"some/hub-model\""));

    // What cannot be exported, each named.
    std::fs::write(dir.join("empty.jsonl"), "\n").unwrap();
    let empty = refused(&["export", "--rankings", "empty.jsonl", "--model", sft, "--out", "y"], dir);
    assert!(empty.contains("empty.jsonl") && empty.contains("no rankings"), "{empty}");
    std::fs::write(dir.join("bad.jsonl"), "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"], \"ranking\": [0, 0]}\n").unwrap();
    let bad = refused(&["export", "--rankings", "bad.jsonl", "--model", sft, "--out", "y"], dir);
    assert!(bad.contains("bad.jsonl:1") && bad.contains("ranking"), "{bad}");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(dir.join("r.jsonl"), dir.join("data/r.jsonl")).unwrap();
    let over_input = refused(&["export", "--rankings", "data/r.jsonl", "--model", sft, "--out", "data"], dir);
    assert!(over_input.contains("never writes over its inputs"), "{over_input}");
    let gguf = refused(&["export", "--rankings", "r.jsonl", "--model", "r.jsonl", "--out", "y"], dir);
    assert!(gguf.contains("--model r.jsonl") && gguf.contains("transformers folder"), "{gguf}");
    let no_input = tinyrlhf(&["export", "--model", sft, "--out", "y"], dir);
    assert_eq!(no_input.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&no_input.stderr).contains("--rankings"));
}

#[test]
fn a_peft_layout_adapter_whose_base_is_a_hub_id_loads_with_base_and_answers_as_its_run() {
    let scratch = fresh_dir("peft-layout");
    let dir = scratch.path();
    let sft = shipped_sft();
    ok(&["data", "--out", "world", "--pretrain-lines", "20", "--demos", "16", "--prompts", "4", "--heldout", "3"], dir);
    ok(
        &["sft", "--model", sft.to_str().unwrap(), "--demos", "world/demos.jsonl", "--steps", "2", "--lora-rank", "4", "--out", "lora"],
        dir,
    );
    // As TRL saves it: the adapter's two files at the top, the base named as on another machine.
    std::fs::create_dir_all(dir.join("theirs")).unwrap();
    std::fs::copy(dir.join("lora/adapter/adapter_model.safetensors"), dir.join("theirs/adapter_model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("lora/adapter/adapter_config.json")).unwrap()).unwrap();
    config["base_model_name_or_path"] = "someone/tinyrlhf-sft".into();
    std::fs::write(dir.join("theirs/adapter_config.json"), config.to_string()).unwrap();

    let sample = |model: &str, out: &str| -> Vec<String> {
        ["sample", "--model", model, "--prompts", "world/heldout.jsonl", "--max-new-tokens", "4", "--out", out].map(String::from).to_vec()
    };
    let without = refused(&strs(&sample("theirs", "t.jsonl")), dir);
    assert!(without.contains("someone/tinyrlhf-sft") && without.contains("--base PATH"), "{without}");
    let with_base = [sample("theirs", "t.jsonl"), vec!["--base".into(), sft.display().to_string()]].concat();
    ok(&strs(&with_base), dir);
    ok(&strs(&sample("lora", "l.jsonl")), dir);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("t.jsonl"), read("l.jsonl"), "the adapter in PEFT's layout answers as the run it came from");
}
