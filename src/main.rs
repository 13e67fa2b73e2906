//! The `edgetune` binary: parse the command line, run it, map errors to exit codes
//! (2: bad usage or input, 1: runtime failure) with one `error:` line on stderr.

use std::io::Write;
use std::process::ExitCode;

use edgetune::cli::{run, Cli};

/// mimalloc, counted and capped by `--max-memory` (see `edgetune::memory`). The binary's own
/// choice: the library sets no global allocator.
#[global_allocator]
static ALLOC: edgetune::memory::Capped = edgetune::memory::Capped;

fn main() -> ExitCode {
    edgetune::memory::Capped::keep_freed_pages();
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's first paragraph names the problem (joined into one line); its usage lines
            // and hint are what --help shows.
            let text = e.to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let _ = writeln!(std::io::stderr(), "{}", first.join(" "));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Never a panic, even with stderr closed.
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(edgetune::cli::exit_code(&e))
        }
    }
}
