//! `raftcache-chaos`: the chaos harness's command line. For now it only
//! re-checks a saved history:
//!
//! ```text
//! raftcache-chaos check HISTORY.jsonl [--json] [--max-steps N] [--timeout SECS]
//! ```
//!
//! Exit status: 0 when every checker finds the history valid, 1 on a
//! violation, 2 on a usage error or an unreadable history, 3 when no checker
//! found a violation but one could not conclude (search budget exhausted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use raftcache_chaos::{check_all, Budget, History, Verdict};

#[derive(Parser)]
#[command(
    name = "raftcache-chaos",
    version,
    about = "Chaos testing for raftcache: check operation histories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-check a saved history (JSON lines, one operation per line).
    Check {
        /// The history file.
        history: PathBuf,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        /// Search steps allowed per key for the linearizability checker.
        #[arg(long, default_value_t = Budget::DEFAULT_STEPS_PER_KEY)]
        max_steps: u64,
        /// Wall-clock limit for the whole check, in seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

const EXIT_VALID: u8 = 0;
const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history, json, max_steps, timeout } => {
            check(&history, json, max_steps, timeout)
        }
    }
}

fn check(path: &Path, json: bool, max_steps: u64, timeout: Option<f64>) -> ExitCode {
    let timeout = match timeout.map(Duration::try_from_secs_f64).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("raftcache-chaos: --timeout: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let history = match History::load(path) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("raftcache-chaos: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let started = Instant::now();
    let reports = match check_all(&history, &Budget::new(max_steps, timeout)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftcache-chaos: {}: {e}", path.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let elapsed = started.elapsed();
    if json {
        let out = serde_json::json!({
            "history": path.display().to_string(),
            "ops": history.ops.len(),
            "seconds": elapsed.as_secs_f64(),
            "reports": reports,
        });
        println!("{out:#}");
    } else {
        println!(
            "{}: {} operations, checked in {:.3}s",
            path.display(),
            history.ops.len(),
            elapsed.as_secs_f64()
        );
        for r in &reports {
            print!("{r}");
        }
    }
    let code = if reports.iter().any(|r| r.verdict.is_invalid()) {
        EXIT_INVALID
    } else if reports.iter().any(|r| matches!(r.verdict, Verdict::Unknown { .. })) {
        EXIT_UNKNOWN
    } else {
        EXIT_VALID
    };
    ExitCode::from(code)
}
