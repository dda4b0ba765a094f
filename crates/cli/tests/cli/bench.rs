//! `tinyrlhf bench`: refusals before measuring, and the JSON a script reads.

use super::common::{fresh_dir, tinyrlhf};

#[test]
fn bench_refuses_an_unknown_preset_a_zero_size_or_a_model_past_memory_before_measuring_anything() {
    let scratch = fresh_dir("bench-bad");
    let dir = scratch.path();
    let cases: [(&[&str], &str); 3] = [
        (&["--preset", "tiny,nope"], "--preset \"nope\" is not one of"),
        (&["--preset", "tiny", "--vocab", "0"], "must be at least 1"),
        (&["--preset", "tiny", "--vocab", "100000000000"], "would need at least"),
    ];
    for (flags, says) in cases {
        let out = tinyrlhf(&[&["bench", "--json"][..], flags].concat(), dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(1 | 2)) && stderr.contains(says), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing measured before the refusal");
    }
}

#[test]
fn bench_json_is_one_object_with_every_figure_a_script_tracks() {
    let scratch = fresh_dir("bench");
    let dir = scratch.path();
    let out = tinyrlhf(
        &["bench", "--json", "--preset", "tiny", "--vocab", "64", "--batch", "2", "--seq-len", "8", "--steps", "1"]
            .into_iter()
            .chain(["--new-tokens", "16", "--runs", "1", "--ppo-iterations", "1", "--products"])
            .collect::<Vec<_>>(),
        dir,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "one JSON object, one line: {stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let figures = &json["runs"][0]["figures"];
    assert_eq!(json["runs"][0]["preset"], "tiny");
    assert!(figures["train_step"]["tok_s"].as_f64().unwrap() > 0.0);
    let lora_dpo = &figures["lora_dpo_step"];
    assert!(lora_dpo["reference_secs"].as_f64().unwrap() > 0.0 && lora_dpo["policy_secs"].as_f64().unwrap() > 0.0);
    assert!(json["memory_bandwidth_gb_s"].as_f64().unwrap() > 0.0);
    // Every figure says where it was measured: the CPU, its threads and the matrix kernels' SIMD level.
    let machine = &json["machine"];
    assert!(machine["cpu"].as_str().is_some_and(|c| !c.is_empty()) && machine["threads"].as_u64().unwrap() >= 1, "{machine}");
    assert!(machine["simd"].as_str().is_some_and(|s| !s.is_empty()), "{machine}");
    assert!(machine["caches"].as_str().is_some_and(|c| c.starts_with("L1d ") && c.contains(", L3 ")), "{machine}");
    for g in figures["generate"].as_array().unwrap() {
        assert!(g["kv_cache_tok_s"].as_f64().unwrap() > 0.0 && g["no_cache_tok_s"].as_f64().unwrap() > 0.0);
        // The sampler chooses tokens on the device and reads the ids back once per 8 tokens.
        assert_eq!(g["device_reads_per_token"].as_f64(), Some(1.0 / 8.0));
        // Kernel counts belong to GPU backends: on the CPU they are absent, not 0.
        assert!(g["kernels_per_token"].is_null());
    }
    // The train step's products: each layer weight's name once with the layers as its count, the
    // head's last, and the step's sum of their three products times their counts.
    let products = &figures["products"];
    assert_eq!(products["tokens"].as_u64(), Some(2 * 8));
    let rows = products["rows"].as_array().unwrap();
    let (head, layers) = rows.split_last().unwrap();
    assert_eq!((head["name"].as_str(), head["dims"][1].as_u64(), head["count"].as_u64()), (Some("lm_head"), Some(64), Some(1)));
    assert!(!layers.is_empty() && layers.iter().all(|r| r["name"].as_str().unwrap().contains(".*.") && r["count"] == layers[0]["count"]));
    let ms = |r: &serde_json::Value| ["forward_ms", "input_grad_ms", "weight_grad_ms"].map(|k| r[k].as_f64().unwrap()).iter().sum::<f64>();
    let sum: f64 = rows.iter().map(|r| ms(r) * r["count"].as_f64().unwrap()).sum();
    assert!(sum > 0.0 && (products["step_ms"].as_f64().unwrap() - sum).abs() < 1e-9 * sum.max(1.0), "{products}");
    let ppo = &figures["ppo_iteration"];
    let split = ["rollout_secs", "scoring_secs", "update_secs"].map(|k| ppo[k].as_f64().unwrap());
    assert!((ppo["secs"].as_f64().unwrap() - split.iter().sum::<f64>()).abs() < 1e-9);
    // Rollout: 48 tokens in reads of 8; scoring: one; the update's numbers: one.
    assert_eq!(figures["device_reads_per_ppo_iteration"].as_u64(), Some(48 / 8 + 2));
    assert_eq!(figures["device_reads_per_reward_step"].as_u64(), Some(1));
    for method in ["grpo_iteration", "rloo_iteration", "dpo_step", "reward_step"] {
        assert!(figures[method]["secs"].as_f64().unwrap() > 0.0, "{method}");
    }
}
