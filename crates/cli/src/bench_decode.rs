//! `tinyrlhf bench --decode MODEL`: how fast a real model answers on this machine's CPU — a
//! prompt's prefill, and decoding one answer, four and eight at once, in tokens/s on `--threads` threads
//! — and, with `--llama-cpp BIN` (llama.cpp's `llama-batched-bench`, built from a registry
//! package's source by `bench/decode/run.sh`), the same four figures from llama.cpp on the same
//! file and threads in the same run, with tinyrlhf's ratio to each.
//!
//! Decoding is timed as llama.cpp's batched bench times it: the rate of the new tokens alone, here
//! the difference between runs of `new` and of 1 new token, so the prompt's prefill is not counted.

use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrlhf_model::{CausalLm, Generating, SamplingConfig, generate};

use crate::bench::median;
use crate::bench_inputs::{prompts, random_tokens};
use crate::model_dirs;

/// What `--decode` measures, from the bench's flags.
#[derive(Debug)]
pub(crate) struct DecodeBench<'a> {
    pub model: &'a Path,
    pub threads: usize,
    /// Tokens in the prefilled prompt.
    pub prompt_tokens: usize,
    /// New tokens per answer.
    pub new_tokens: usize,
    pub runs: usize,
    pub llama_cpp: Option<&'a Path>,
    pub json: bool,
}

/// One implementation's figures, tokens/s.
#[derive(Debug, serde::Serialize)]
struct Rates {
    prefill: f64,
    one_answer: f64,
    four_answers: f64,
    eight_answers: f64,
}

pub(crate) fn run(bench: &DecodeBench) -> Result<(), String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(bench.threads).build().map_err(|e| e.to_string())?;
    let device = crate::backend::Backend::Cpu.device()?;
    let lm = model_dirs::load_model_dir(bench.model, &device)?;
    let context = lm.config.context_length();
    if bench.prompt_tokens + 1 > context || crate::bench_inputs::PROMPT_LEN + bench.new_tokens > context {
        return Err(format!("--decode: the prompt and answers must fit the model's context of {context} tokens"));
    }
    let ours = pool.install(|| rates(&lm.model, &device, bench));
    let theirs = bench.llama_cpp.map(|bin| llama_cpp_rates(bin, bench)).transpose()?;
    let machine = crate::machine::Machine::here();
    if bench.json {
        println!(
            "{}",
            serde_json::json!({"machine": machine, "model": bench.model, "threads": bench.threads, "tinyrlhf": ours, "llama_cpp": theirs})
        );
        return Ok(());
    }
    println!("{machine}; measured on {} of them", bench.threads);
    println!(
        "{} ({}, {:.1} M params): prefill {} tokens, answers of {} new tokens, tokens/s",
        bench.model.display(),
        lm.config.architecture(),
        lm.config.num_params() as f64 / 1e6,
        bench.prompt_tokens,
        bench.new_tokens
    );
    println!("  {:<12} {:>10} {:>12} {:>14} {:>15}", "", "prefill", "one answer", "four answers", "eight answers");
    let row = |name: &str, r: &Rates| {
        println!("  {name:<12} {:>10.1} {:>12.1} {:>14.1} {:>15.1}", r.prefill, r.one_answer, r.four_answers, r.eight_answers)
    };
    row("tinyrlhf", &ours);
    if let Some(theirs) = &theirs {
        row("llama.cpp", theirs);
        println!(
            "  {:<12} {:>9.2}x {:>11.2}x {:>13.2}x {:>14.2}x",
            "ratio",
            ours.prefill / theirs.prefill,
            ours.one_answer / theirs.one_answer,
            ours.four_answers / theirs.four_answers,
            ours.eight_answers / theirs.eight_answers
        );
    }
    Ok(())
}

/// tinyrlhf's rates: medians of `runs` runs after a warm-up.
fn rates(lm: &CausalLm, device: &Device, bench: &DecodeBench) -> Rates {
    let vocab = lm.vocab_size();
    let prompt_len = bench.prompt_tokens;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(random_tokens(1, prompt_len, vocab, 3), [1, prompt_len]), device);
    let positions = Tensor::<2, Int>::from_data(TensorData::new((0..prompt_len as i64).collect::<Vec<_>>(), [1, prompt_len]), device);
    let prefill = median(bench.runs, || {
        // Its products as generation's are (`Generating`); the last position's logits, read back:
        // what a prefill ends with.
        let _generating = Generating::start();
        let hidden = lm.forward(ids.clone(), positions.clone(), None).narrow(1, prompt_len - 1, 1);
        let _: Vec<f32> = lm.logits(hidden).into_data().try_to_vec().expect("f32 logits");
    });
    let decode = |batch: usize| {
        let answers = |new: usize| {
            let sampling = SamplingConfig { max_new_tokens: new, temperature: 1.0, ..Default::default() };
            // No EOS id inside the vocabulary: every row runs the full length.
            pollster::block_on(generate(lm, &prompts(batch, vocab), u32::MAX, 0, &sampling)).expect("benchmark prompts are valid");
        };
        let (whole, first) = (median(bench.runs, || answers(bench.new_tokens)), median(bench.runs, || answers(1)));
        (batch * (bench.new_tokens - 1)) as f64 / whole.saturating_sub(first).as_secs_f64().max(1e-9)
    };
    Rates { prefill: prompt_len as f64 / prefill.as_secs_f64(), one_answer: decode(1), four_answers: decode(4), eight_answers: decode(8) }
}

/// llama.cpp's rates from `llama-batched-bench` (CPU only, the same threads): a prompt of the same
/// length prefilled, and `-npl 1,4,8` parallel answers of the same new tokens.
fn llama_cpp_rates(bin: &Path, bench: &DecodeBench) -> Result<Rates, String> {
    let threads = bench.threads.to_string();
    let (npp, ntg) = (bench.prompt_tokens.to_string(), bench.new_tokens.to_string());
    let context = (8 * (bench.prompt_tokens + bench.new_tokens)).to_string();
    let model = bench.model.to_str().ok_or("--decode: the model's path is not UTF-8")?;
    let args = ["-m", model, "-t", &threads, "-tb", &threads, "-ngl", "0", "-c", &context, "-npp", &npp, "-ntg", &ntg, "-npl", "1,4,8"];
    let out = Command::new(bin).args(args).args(["--output-format", "jsonl"]).output().map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed:\n{}", bin.display(), String::from_utf8_lossy(&out.stderr)));
    }
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let field = |pl: u64, name: &str| {
        rows.iter()
            .find(|r| r["pl"].as_u64() == Some(pl))
            .and_then(|r| r[name].as_f64())
            .ok_or_else(|| format!("{}: no `{name}` for {pl} parallel answers in its output", bin.display()))
    };
    Ok(Rates {
        prefill: field(1, "speed_pp")?,
        one_answer: field(1, "speed_tg")?,
        four_answers: field(4, "speed_tg")?,
        eight_answers: field(8, "speed_tg")?,
    })
}
