//! The command-line interface: clap definitions and one module per subcommand. `main.rs` only
//! parses, calls `run` and maps errors to exit codes.

/// `println!` that never panics: with stdout closed (`edgetune ... | head`) the text is dropped
/// and the command goes on, so a training run still writes its model and log.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (stderr closed, as in `2>&1 | head -c 0`).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod finetune;
mod grad;
mod grad_flow;
mod infer;
pub(crate) mod input;
mod interrupt;
mod progress;
mod steplog;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::inspect::Report;

#[derive(Parser, Debug)]
#[command(name = "edgetune", version, about = "Run and finetune ONNX ResNets on the CPU")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Cap on heap memory, e.g. 800M or 4G: past it, a clear error (exit 2) instead of an
    /// out-of-memory kill.
    #[arg(long, global = true, value_parser = parse_bytes)]
    pub max_memory: Option<usize>,
}

impl Cli {
    /// The command line of this process; `--version` also names the GEMM kernel this CPU gets.
    pub fn parse_args() -> std::result::Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let long = format!("{}\n{}", env!("CARGO_PKG_VERSION"), crate::kernels::micro::describe());
        // Leaked once per process: clap keeps a `&'static str` (its `string` feature is off).
        let matches = Cli::command().long_version(&*long.leak()).try_get_matches()?;
        Cli::from_arg_matches(&matches)
    }
}

/// `800M`, `4G`, `512K` or a plain byte count.
fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let (num, unit) = match s.trim().char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("'{s}': expected a size such as 800M or 4G")),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("'{s}': expected a size such as 800M or 4G"))?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("'{s}': the size must be positive"));
    }
    Ok((n * (1u64 << shift) as f64) as usize)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a model's inputs, outputs, ops, parameters and what edgetune supports of it.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a model on a .npy array or on images.
    Infer(infer::InferArgs),
    /// Loss and gradients of every trainable initializer on one batch, to an .npz.
    Grad(grad::GradArgs),
    /// The gradient-overlap report: at every residual Add, the gradient through the skip path
    /// and through the branch, their cosine and their sum; each tensor's gradient before and
    /// after ZNorm.
    GradFlow(grad_flow::GradFlowArgs),
    /// Train on a dataset and write the updated model as ONNX.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(cli: Cli) -> Result<()> {
    if let Some(cap) = cli.max_memory {
        crate::memory::set_cap(cap);
    }
    match cli.command {
        Command::Inspect { model, json } => {
            let m = crate::onnx::load_any_ops(&model)?;
            let report = Report::new(&m);
            if json {
                say!("{}", report.to_json());
            } else {
                say!("{}", report.to_string().trim_end());
            }
            Ok(())
        }
        Command::Infer(args) => infer::run(args),
        Command::Grad(args) => grad::run(args),
        Command::GradFlow(args) => grad_flow::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// The exit code of a command that failed with `e`: 2 for anything the user can fix in their
/// input or options, 1 for runtime failures, 130 (the shell's code for SIGINT) for a run the
/// user stopped.
pub fn exit_code(e: &crate::error::Error) -> u8 {
    use crate::error::Error;
    match e {
        Error::NonFinite(_) | Error::Runtime(_) => 1,
        Error::Stopped(_) => 130,
        _ => 2,
    }
}

/// A rayon pool of `threads` workers (0: one per core).
pub(crate) use crate::exec::thread_pool;
