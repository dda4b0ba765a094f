//! `tinyrlhf`: the InstructGPT pipeline from the command line.
//!
//! This is an edge: it owns files, flags, progress bars and the choice of backend; the stages
//! themselves live in the library crates and take bytes and devices.

mod allocator;
mod backend;
mod bench;
mod bench_decode;
mod bench_inputs;
mod bench_methods;
mod bench_products;
mod checkpoints;
mod compare;
mod data;
mod dpo;
mod drive;
mod eval;
mod export;
mod files;
mod group;
mod kernels;
mod lora;
mod machine;
mod model_dirs;
mod outputs;
mod policy;
mod ppo;
mod progress;
mod rank;
mod rankings;
mod resume;
mod reward;
mod sample;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tinyrlhf",
    version,
    about = "The InstructGPT recipe, small: data, tokenizer, pretrain, SFT, sample, rank, reward, PPO, DPO, GRPO, RLOO, eval."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Replace what an earlier run wrote in --out (a file, or tinyrlhf's files in a folder that
    /// holds no run to resume). Never needed for a new --out; never lets --out be an input.
    #[arg(long, global = true)]
    overwrite: bool,
    /// Load an adapter onto a base whose weights are not those it was trained on (each adapter
    /// records its base's identity; a base re-saved or converted in a way that changed its bytes
    /// is refused without this).
    #[arg(long, global = true)]
    allow_other_base: bool,
    /// The base, on this machine, of an adapter trained elsewhere (TRL, PEFT) whose
    /// `base_model_name_or_path` is a hub id or another machine's path.
    #[arg(long, global = true, value_name = "PATH")]
    base: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the built-in instruction world: pretraining text, demonstrations, training and
    /// held-out prompts. Deterministic from --seed.
    Data(data::DataArgs),
    /// Learn a byte-level BPE tokenizer (with the chat special tokens) from text.
    Tokenizer(data::TokenizerArgs),
    /// Pretrain a base model on plain text: it learns to continue text, not to follow instructions.
    Pretrain(train::PretrainArgs),
    /// Supervised fine-tuning on demonstrations: the base model learns to answer in the chat
    /// template and to end its answers. Loss on the answers only.
    Sft(train::SftArgs),
    /// Sample K answers for each prompt of a file, to a samples file for ranking.
    Sample(sample::SampleArgs),
    /// Rank the samples of each prompt, best first: typed in the terminal, or by --labeler.
    Rank(rank::RankArgs),
    /// Train a reward model from the SFT model on rankings (or TRL chosen/rejected pairs).
    Reward(reward::RewardArgs),
    /// Tune the SFT policy with PPO against a reward model, KL-penalised to the SFT model.
    Ppo(ppo::PpoArgs),
    /// Tune the SFT policy directly on rankings with DPO (or IPO, hinge): no reward model needed.
    Dpo(dpo::DpoArgs),
    /// Tune the SFT policy with GRPO against a reward model: K answers per prompt, rewards centred
    /// (and scaled) within each group, no value model.
    Grpo(group::GroupArgs),
    /// Tune the SFT policy with RLOO against a reward model: K answers per prompt, each answer's
    /// baseline the mean reward of the other K-1, no value model.
    Rloo(group::GroupArgs),
    /// Talk to a model: one prompt per line on standard input.
    Chat(sample::ChatArgs),
    /// Score a model on held-out prompts: EOS rate, answer length, accuracy per task family, and
    /// how often its samples differ in ways a labeler can rank. With --reference: the blind
    /// win-rate of one model over another under a labeler, and the KL between them.
    Eval(eval::EvalArgs),
    /// Write rankings and demonstrations, with a run's settings, as TRL's command line takes them
    /// (`trl dpo`, `reward`, `grpo`, `rloo`, `sft` on accelerate), for a model larger than one
    /// machine; the adapter TRL trains loads back with `--base`.
    Export(export::ExportArgs),
    /// Time a training step (forward + backward + AdamW), the methods' steps and generation with
    /// and without the KV cache, for any preset (`tiny`, `small`, `gpt2-124m`, `llama-tiny`,
    /// `smollm2-135m`, `qwen2.5-0.5b`); with `--decode MODEL`, a real model's prefill and decoding
    /// beside llama.cpp's (`--llama-cpp`). Prints figures; asserts nothing.
    Bench(bench::BenchArgs),
}

impl Command {
    /// What the command writes and reads, for [`outputs::claim`]; `None` when it writes nothing.
    fn plan(&self) -> Option<outputs::Plan<'_>> {
        match self {
            Command::Data(args) => Some(args.plan()),
            Command::Tokenizer(args) => Some(args.plan()),
            Command::Pretrain(args) => Some(args.plan()),
            Command::Sft(args) => Some(args.plan()),
            Command::Sample(args) => Some(args.plan()),
            Command::Rank(args) => Some(args.plan()),
            Command::Reward(args) => Some(args.plan()),
            Command::Ppo(args) => Some(args.plan()),
            Command::Dpo(args) => Some(args.plan()),
            Command::Grpo(args) | Command::Rloo(args) => Some(args.plan()),
            Command::Eval(args) => args.plan(),
            Command::Export(args) => Some(args.plan()),
            Command::Chat(_) | Command::Bench(_) => None,
        }
    }
}

fn main() -> std::process::ExitCode {
    allocator::keep_freed_memory();
    // `--lr -1` is a negative learning rate, refused by name as the tab refuses it, not an
    // unknown flag `-1`.
    let matches = Cli::command().mut_subcommands(|command| command.allow_negative_numbers(true)).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    model_dirs::set_other_base(cli.allow_other_base);
    model_dirs::set_local_base(cli.base.clone());
    tinyrlhf_rlhf::memory::sizes::set_memory_limit(machine_memory());
    // Held until the process ends: the output folder's lock.
    let claim = cli.command.plan().map(|plan| outputs::claim(&plan, cli.overwrite)).transpose();
    let result = claim.and_then(|_claim| on_the_thread_pool(|| run(cli.command)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", tinyrlhf_rlhf::messages::shown(&message));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `work` on one of rayon's threads, not on the main thread: a parallel product started from
/// outside the pool hands its work to the pool and sleeps until woken, a wake-up for each of the
/// few hundred products of every decoded token (a quarter of a two-thread sampling's samples were
/// the scheduler's); started from inside, the starting thread works too and nothing sleeps. The
/// main thread's stack size, as the work would have had there.
fn on_the_thread_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build() {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

/// The memory this process can have: the machine's, or its container's limit when lower.
fn machine_memory() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let total = system.total_memory();
    system.cgroup_limits().map_or(total, |limits| limits.total_memory.min(total))
}

fn run(command: Command) -> files::Result<()> {
    match command {
        Command::Data(args) => data::data(&args),
        Command::Tokenizer(args) => data::tokenizer(&args),
        Command::Pretrain(args) => train::pretrain(&args),
        Command::Sft(args) => train::sft(&args),
        Command::Sample(args) => sample::sample(&args),
        Command::Rank(args) => rank::rank(&args),
        Command::Reward(args) => reward::reward(&args),
        Command::Ppo(args) => ppo::ppo(&args),
        Command::Dpo(args) => dpo::dpo(&args),
        Command::Grpo(args) => group::run(&args, tinyrlhf_rlhf::GroupMethod::Grpo),
        Command::Rloo(args) => group::run(&args, tinyrlhf_rlhf::GroupMethod::Rloo),
        Command::Chat(args) => sample::chat(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Export(args) => export::export(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

/// Parses a count of at most `MAX` (a count that sizes what is made or held: past what the
/// readers or the memory take, it is refused with the limit instead of aborting the process).
fn at_most<const MAX: usize>(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX => Ok(n),
        Ok(_) => Err(format!("must be at most {MAX}")),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Err(format!("must be at most {MAX}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a count that must be at least 1 (a period of 0 would divide by zero).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
