//! The command line: parse, call the library, print. No simulation logic lives here.
//!
//! `main` is `run(parse())`; every failure becomes a [`CliError`] whose message names the
//! file, record or field at fault, and the process exits with code 2.

mod calibrate;
mod compare;
mod error;
mod exec;
mod generate;
mod model;
mod trace;
mod trace_record;
mod validate;

pub use error::CliError;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "edgesim",
    version,
    about = "Which LLM offloading policy wins on this device and memory budget, by how much, and why",
    long_about = "edgesim replays recorded MoE-expert and FFN-neuron activation traces through \
offloading policies (HOBBIT, PowerInfer-2, TZ-LLM, T-MAC and their baselines) on a \
discrete-event model of a device's flash, DRAM, CPU, NPU and TEE, and runs the same policies on \
a real executor to check the predictions."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare policies: every policy of an experiment at every memory budget, on the
    /// simulator; writes results.csv, results.json and SVG plots.
    Compare(compare::CompareArgs),
    /// Replay one trace under one policy and print its figures.
    Replay(compare::ReplayArgs),
    /// Check, measure, generate, import and dump activation traces.
    Trace(trace::TraceArgs),
    /// Fetch or inspect a real model (GGUF) in the local cache.
    Model(model::ModelArgs),
    /// Generate text with a real model.
    Generate(generate::GenerateArgs),
    /// The real executor: write a weight store (`exec prepare`), run a policy (`exec run`).
    Exec(exec::ExecArgs),
    /// Measure this machine and write its device profile.
    Calibrate(calibrate::CalibrateArgs),
    /// Put the simulator's predictions beside the executor's measurements.
    Validate(validate::ValidateArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Compare(args) => compare::run_compare(args),
        Command::Replay(args) => compare::run_replay(args),
        Command::Trace(args) => trace::run(args),
        Command::Model(args) => model::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Validate(args) => validate::run(args),
    }
}

/// Entry point for `main`: parse, run, report, exit.
pub fn main() -> ! {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
