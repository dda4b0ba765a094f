//! `tinyrlhf`: the InstructGPT pipeline from the command line.
//!
//! This is an edge: it owns files, flags, progress output and the choice of backend; the stages
//! themselves live in the library crates and take bytes and devices.

mod backend;
mod bench;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tinyrlhf", version, about = "The InstructGPT recipe, small: pretrain, SFT, reward model, PPO.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time a training step (forward + backward + AdamW) and generation with and without the KV
    /// cache, for the `tiny` and `small` presets. Prints figures; asserts nothing.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
