//! The command-line interface: clap definitions and one module per subcommand. `main.rs` only
//! parses, calls `run` and maps errors to exit codes.

mod bench;
mod finetune;
mod grad;
mod infer;
pub(crate) mod input;
mod interrupt;
mod progress;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::inspect::Report;

#[derive(Parser, Debug)]
#[command(name = "edgetune", version, about = "Run and finetune ONNX ResNets on the CPU")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a model's inputs, outputs, ops, parameters and what edgetune supports of it.
    Inspect {
        model: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a model on a .npy array or on images.
    Infer(infer::InferArgs),
    /// Loss and gradients of every trainable initializer on one batch, to an .npz.
    Grad(grad::GradArgs),
    /// Train on a dataset and write the updated model as ONNX.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => {
            let m = crate::onnx::load(&model)?;
            let report = Report::new(&m);
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Infer(args) => infer::run(args),
        Command::Grad(args) => grad::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// A rayon pool of `threads` workers (0: one per core).
pub(crate) fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::error::Error::Runtime(format!("cannot start the thread pool: {e}")))
}
