//! `--help` documents every option and argument of every command: a user reading
//! `edgetune finetune --help` sees what each flag does (clap shows an undocumented one as a bare
//! name).

use clap::CommandFactory;
use edgetune::cli::Cli;

fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let doc = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if doc.trim().is_empty() {
            out.push(format!("{path} {}", arg.get_long().map_or(id.to_uppercase(), |l| format!("--{l}"))));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() {
            out.push(format!("{path} {} (no description)", sub.get_name()));
        }
        undocumented(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_option_and_argument_has_a_description() {
    let mut missing = Vec::new();
    undocumented(&Cli::command(), "edgetune", &mut missing);
    assert!(missing.is_empty(), "{} without a description:\n{}", missing.len(), missing.join("\n"));
}
