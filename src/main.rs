//! The `edgetune` binary: parse the command line, run it, map errors to exit codes
//! (2: bad usage or input, 1: runtime failure) with one `error:` line on stderr.

use std::process::ExitCode;

use clap::Parser;
use edgetune::cli::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
