//! A `.gguf` file as llama.cpp, Ollama or LM Studio keep it is a model to every command (recognised
//! by its bytes, whatever its name), and a LoRA run on it writes the adapter as llama.cpp's LoRA GGUF
//! beside PEFT's, for the Llama family and Gemma 3; a LoRA reward model is its adapter on that base.

mod common;

use std::path::Path;

use common::{fresh_dir, ok, tinyrlhf};

#[test]
fn a_gguf_file_is_a_model_and_a_lora_run_on_it_writes_llama_cpps_adapter() {
    let scratch = fresh_dir("gguf");
    let dir = scratch.path();
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "20", "--prompts", "8", "--heldout", "4"], dir);
    // llama.cpp's conversion of the Llama fixture, quantised to Q8_0 (tests/fixtures/gguf/make.py).
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/hf-llama.q8_0.gguf");
    let gguf = gguf.to_str().unwrap();
    let sample = ["sample", "--model", gguf, "--prompts", "world/heldout.jsonl", "-k", "2", "--max-new-tokens", "5", "--out", "s.jsonl"];
    ok(&sample, dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    let dpo = ["dpo", "--policy", gguf, "--rankings", "r.jsonl", "--epochs", "1", "--batch", "4", "--lora-rank", "4", "--lora-alpha", "8"];
    ok(&[&dpo[..], &["--out", "dpo"]].concat(), dir);
    // The adapter loads onto the GGUF it names.
    ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "3"], dir);
    assert!(!dir.join("dpo/model.gguf").exists() && !dir.join("dpo/model.safetensors").exists(), "no merged copy unless asked");
    // Asked, the merged model is one GGUF in the base's types (Q8_0 here), a model of its own.
    ok(&[&dpo[..], &["--merge", "--out", "merged"]].concat(), dir);
    let types = |bytes: &[u8]| {
        tinyrlhf_model::GgufHeader::read(bytes).unwrap().tensors.into_iter().map(|t| (t.name, t.ggml_type)).collect::<Vec<_>>()
    };
    let merged = std::fs::read(dir.join("merged/model.gguf")).unwrap();
    assert_eq!(types(&merged), types(&std::fs::read(gguf).unwrap()));
    assert!(!dir.join("merged/model.safetensors").exists());
    ok(
        &[
            "sample",
            "--model",
            "merged/model.gguf",
            "--prompts",
            "world/heldout.jsonl",
            "-k",
            "1",
            "--max-new-tokens",
            "3",
            "--out",
            "m.jsonl",
        ],
        dir,
    );

    let bytes = std::fs::read(dir.join("dpo/adapter.gguf")).unwrap();
    let header = tinyrlhf_model::GgufHeader::read(&bytes).unwrap();
    let text = |key: &str| header.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    assert_eq!(
        (text("general.type"), text("adapter.type"), text("general.architecture")),
        (Some("adapter".into()), Some("lora".into()), Some("llama".into()))
    );
    assert_eq!(header.get("adapter.lora.alpha").and_then(|v| v.as_f64()), Some(8.0));
    let peft = std::fs::read(dir.join("dpo/adapter/adapter_model.safetensors")).unwrap();
    let peft = safetensors::SafeTensors::deserialize(&peft).unwrap();
    assert_eq!(header.tensors.len(), peft.len(), "one GGUF tensor per PEFT factor");
    let down_a = peft.tensor("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight").unwrap();
    let ours = header.tensor("blk.1.ffn_down.weight.lora_a").unwrap();
    assert_eq!(ours.shape, down_a.shape(), "llama.cpp's lora_a is PEFT's [rank, in]");
    assert_eq!(tinyrlhf_model::tensor_f32(ours, &bytes, 0).unwrap().len(), down_a.shape().iter().product::<usize>());
    let q_b = header.tensor("blk.0.attn_q.weight.lora_b").unwrap();
    assert_eq!(q_b.shape[1], 4, "lora_b is [out, rank]");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_gguf_is_recognised_by_its_bytes_whatever_its_name_and_other_files_are_refused() {
    let scratch = fresh_dir("gguf-by-content");
    let dir = scratch.path();
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "20", "--prompts", "8", "--heldout", "4"], dir);
    // Ollama keeps each model as a blob named by its digest, with no extension.
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/hf-llama.q8_0.gguf");
    let blob = dir.join("sha256-6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa");
    std::fs::copy(&gguf, &blob).unwrap();
    let blob = blob.to_str().unwrap();
    ok(&["sample", "--model", blob, "--prompts", "world/heldout.jsonl", "-k", "2", "--max-new-tokens", "3", "--out", "s.jsonl"], dir);

    std::fs::write(dir.join("notes.gguf"), "not a model\n").unwrap();
    let out = tinyrlhf(&["sample", "--model", "notes.gguf", "--prompts", "world/heldout.jsonl", "--out", "t.jsonl"], dir);
    assert_eq!(out.status.code(), Some(1));
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(refused.contains("notes.gguf: not a model") && refused.contains("GGUF"), "{refused}");
    assert!(!dir.join("t.jsonl").exists(), "nothing is written for a refused model");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_gemma3_gguf_with_a_sentencepiece_vocabulary_goes_through_every_stage_with_lora() {
    let scratch = fresh_dir("gemma3");
    let dir = scratch.path();
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "20", "--prompts", "8", "--heldout", "4"], dir);
    // llama.cpp's conversion of the SentencePiece Gemma 3 fixture, quantised to Q8_0.
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/hf-gemma3-sp.q8_0.gguf");
    let gguf = gguf.to_str().unwrap();
    let lora = ["--lora-rank", "4", "--lora-alpha", "8"];
    let sample = ["sample", "--model", gguf, "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "5", "--out", "s.jsonl"];
    ok(&sample, dir);
    ok(&["rank", "--samples", "s.jsonl", "--labeler", "concise", "--out", "r.jsonl"], dir);
    ok(&[&["reward", "--model", gguf, "--rankings", "r.jsonl", "--epochs", "1", "--out", "rm"][..], &lora].concat(), dir);
    ok(&[&["dpo", "--policy", gguf, "--rankings", "r.jsonl", "--epochs", "1", "--batch", "4", "--out", "dpo"][..], &lora].concat(), dir);
    // A LoRA reward model is its adapter and score head on the base it names, not a copy of it.
    assert!(!dir.join("rm/model.safetensors").exists());
    let adapter: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("rm/adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(adapter["task_type"], "SEQ_CLS");
    let grpo = ["grpo", "--policy", gguf, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", "grpo", "--iterations", "1"];
    ok(&[&grpo[..], &["--prompts-per-iteration", "2", "-k", "2", "--max-new-tokens", "4"], &lora].concat(), dir);
    let ppo = ["ppo", "--policy", gguf, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", "ppo", "--iterations", "1"];
    ok(&[&ppo[..], &["--batch", "2", "--max-new-tokens", "4"], &lora].concat(), dir);
    let rloo = ["rloo", "--policy", gguf, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", "rloo", "--iterations", "1"];
    ok(&[&rloo[..], &["--prompts-per-iteration", "2", "-k", "2", "--max-new-tokens", "4"], &lora].concat(), dir);
    // SFT on demonstrations gives the template-less base its turns; the tuned model samples with them.
    ok(
        &[&["sft", "--model", gguf, "--demos", "world/demos.jsonl", "--steps", "2", "--batch", "4", "--out", "sft"][..], &lora].concat(),
        dir,
    );
    ok(&["sample", "--model", "sft", "--prompts", "world/heldout.jsonl", "-k", "1", "--max-new-tokens", "3", "--out", "after.jsonl"], dir);
    // Given as a policy, a reward model's folder is refused for what it is.
    let wrong = tinyrlhf(&["sample", "--model", "rm", "--prompts", "world/prompts.jsonl", "--out", "x.jsonl"], dir);
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("SEQ_CLS"), "{wrong:?}");
    for run in ["dpo", "grpo", "rloo", "sft"] {
        let bytes = std::fs::read(dir.join(run).join("adapter.gguf")).unwrap();
        let header = tinyrlhf_model::GgufHeader::read(&bytes).unwrap();
        assert_eq!(header.get("general.architecture").and_then(|v| v.as_str()), Some("gemma3"), "{run}");
        assert!(header.tensor("blk.5.ffn_gate.weight.lora_b").is_some(), "{run}: Gemma's GeGLU gate is adapted");
        let peft = std::fs::read(dir.join(run).join("adapter/adapter_model.safetensors")).unwrap();
        let peft = safetensors::SafeTensors::deserialize(&peft).unwrap();
        assert!(peft.tensor("base_model.model.model.layers.5.self_attn.o_proj.lora_A.weight").is_ok(), "{run}: PEFT's names");
    }
    ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "3"], dir);
    std::fs::remove_dir_all(dir).ok();
}
