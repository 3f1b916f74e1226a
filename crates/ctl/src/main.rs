//! `raftcachectl`: the admin command-line client of a raftcache cluster.
//!
//! It speaks only gRPC, to the admin service of `proto/admin.proto`
//! (`raftcache.admin.v1.Admin`) on each node's admin port. Every failure
//! ends with one line on stderr (`raftcachectl: …`) and a non-zero exit
//! code: 2 for usage errors (clap's), 1 otherwise (`digest` also uses 2 when
//! the replicas' applied indexes never line up).

mod cli;
mod client;
mod commands;
mod digest;
mod ids;
mod output;
mod render;
mod view;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::Cli;
use crate::client::{Auth, Settings};
use crate::commands::Ctx;
use crate::output::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("raftcachectl: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(Failure::new(format!("cannot start the runtime: {e}"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("raftcachectl: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

/// clap's message as one line: without its usage and "for more
/// information" tail, the lines it puts under a heading joined.
fn one_line(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let joined = kept.join(" ");
    format!("{} (see --help)", joined.strip_prefix("error: ").unwrap_or(&joined))
}

/// Runs the command the flags name.
async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Ctx {
        targets: cli.endpoints,
        settings: Settings {
            auth: Auth(cli.token.map(|t| t.0)),
            timeout: cli.timeout.unwrap_or_else(|| cli.command.default_timeout()),
        },
        json: cli.json,
    };
    commands::run(&ctx, &cli.command).await
}
