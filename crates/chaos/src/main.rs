//! `raftcache-chaos`: the chaos harness's command line.
//!
//! ```text
//! raftcache-chaos run --time 60 --faults kill,pause,partition --out DIR [...]
//! raftcache-chaos check HISTORY.jsonl [--json] [--max-steps N] [--timeout SECS]
//! raftcache-chaos report HISTORY.jsonl [--summary summary.json] [-o report.html]
//! ```
//!
//! `run` starts a cluster in network namespaces, drives the workloads while
//! the nemesis injects faults, and judges the history (see
//! [`raftcache_chaos::run`]); `check` re-checks a saved history; `report`
//! makes the HTML report of a saved run (see [`raftcache_chaos::report`]).
//!
//! Exit status: 0 when every checker finds the history valid, 1 on a
//! violation (for `run` also: digests that differ, a node that crashed or
//! panicked, a cluster that did not recover), 2 on a usage error, an
//! unreadable history or a run that could not be carried out (or was
//! interrupted), 3 when nothing was found but something could not conclude
//! (search budget exhausted, digests never at one applied index).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use raftcache_chaos::run::nemesis::Fault;
use raftcache_chaos::run::workload::{Shape, Workload};
use raftcache_chaos::run::{self, Config};
use raftcache_chaos::{check_all, Budget, History, Verdict};

#[derive(Parser)]
#[command(
    name = "raftcache-chaos",
    version,
    about = "Chaos testing for raftcache: run a cluster under faults, check operation histories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cluster in network namespaces under a nemesis, record the
    /// workloads, and judge the history (run as root).
    Run(Box<RunArgs>),
    /// Remove what runs whose harness was killed outright left behind
    /// (their nodes, namespaces, bridge and FORWARD rule); `run` does this
    /// too when it starts. Runs whose harness is alive are left alone.
    Cleanup,
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
    /// Make the HTML report of a saved run: charts of throughput and latency
    /// with the faults shaded, every checker's verdict, and each violation's
    /// operations. The verdicts come from --summary when given (the run's
    /// summary.json), else the history is checked again.
    Report {
        /// The history file.
        history: PathBuf,
        /// The run's summary.json.
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Where to write the page.
        #[arg(short = 'o', long = "output", default_value = "report.html")]
        output: PathBuf,
        /// Search steps allowed per key for the linearizability checker
        /// (when checking again).
        #[arg(long, default_value_t = Budget::DEFAULT_STEPS_PER_KEY)]
        max_steps: u64,
        /// Wall-clock limit for checking again, in seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?}: {e}"))
}

fn millis(s: &str) -> Result<Duration, String> {
    let v: u64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok(Duration::from_millis(v))
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The raftcache node binary.
    #[arg(long, env = "RAFTCACHE_BIN")]
    bin: PathBuf,
    /// Where history.jsonl, summary.json and the node logs go.
    #[arg(long)]
    out: PathBuf,
    /// Seconds of workload.
    #[arg(long, default_value = "60", value_parser = secs)]
    time: Duration,
    /// Cluster size (3 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Faults to draw from: kill (kill-one, kill-leader, kill-majority,
    /// kill-all), wipe, pause (pause-one, pause-leader), partition
    /// (partition-leader, partition-half, partition-bridge,
    /// partition-one-way), link (slow-link, lossy-link, stall-link: through
    /// the harness's proxy on the peer links), all, none; or single names
    /// (also partition-leader-follower: one follower cut off from the
    /// leader only; partition-follower: one follower cut off from every
    /// other node). One name runs that fault alone, again and again.
    #[arg(long, default_value = "kill,pause,partition")]
    faults: String,
    /// Seconds of quiet before each fault.
    #[arg(long, default_value = "4", value_parser = secs)]
    interval: Duration,
    /// Seconds each fault lasts (longer than twice the election timeout).
    #[arg(long, default_value = "3", value_parser = secs)]
    fault_duration: Duration,
    /// Workloads: register, counter, list-append, set-add, ttl, lock, lock-nx, all.
    #[arg(long, default_value = "all")]
    workloads: String,
    /// Clients per workload, spread over the nodes.
    #[arg(long, default_value_t = 3)]
    clients: u32,
    /// Seed of the fault schedule and of the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The nodes' --appendfsync (`always` keeps acknowledged writes through
    /// kill-majority and kill-all; with `everysec` those may lose the last
    /// second, by design, and the checkers will say so).
    #[arg(long, default_value = "always")]
    appendfsync: String,
    /// An extra flag for every node (repeat it), e.g. --node-arg=--threads=1.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// The nodes' election timeout in ms (only checked against --fault-duration;
    /// pass --node-arg=--election-timeout-ms=N to change the nodes' own).
    #[arg(long, default_value = "300", value_parser = millis)]
    election_timeout_ms: Duration,
    /// Client timeout per operation, in ms (then its outcome is unknown).
    #[arg(long, default_value = "6000", value_parser = millis)]
    op_timeout_ms: Duration,
    /// Most idle time between a client's operations, in ms.
    #[arg(long, default_value = "10", value_parser = millis)]
    think_ms: Duration,
    /// Keys per workload at a time.
    #[arg(long, default_value_t = 3)]
    keys: u32,
    /// Seconds after which the clients move on to fresh keys.
    #[arg(long, default_value = "30", value_parser = secs)]
    key_period: Duration,
    /// Lock names per lock workload.
    #[arg(long, default_value_t = 1)]
    locks: u32,
    /// Lease of a lock, in ms.
    #[arg(long, default_value = "1000", value_parser = millis)]
    lock_ttl_ms: Duration,
    /// The longest ttl of the ttl workload's SETs, in ms (each draws one
    /// from an eighth of it to all of it).
    #[arg(long, default_value = "400", value_parser = millis)]
    key_ttl_ms: Duration,
    /// Seconds the cluster may take to be ready again after the final heal.
    #[arg(long, default_value = "60", value_parser = secs)]
    recovery_timeout: Duration,
    /// Wall-clock limit for the checkers, in seconds.
    #[arg(long, default_value = "300", value_parser = secs)]
    check_timeout: Duration,
    /// Search steps allowed per key for the linearizability checker.
    #[arg(long, default_value_t = Budget::DEFAULT_STEPS_PER_KEY)]
    max_steps: u64,
    /// Keep the nodes' data directories even when the run is valid.
    #[arg(long)]
    keep_data: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
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
        Command::Run(args) => run_command(*args),
        Command::Report { history, summary, output, max_steps, timeout } => {
            report(&history, summary.as_deref(), &output, max_steps, timeout)
        }
        Command::Cleanup => {
            let done = raftcache_chaos::run::netns::clean_stale();
            if done.is_empty() {
                println!("nothing to clean up");
            }
            for line in done {
                println!("{line}");
            }
            ExitCode::from(EXIT_VALID)
        }
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let faults = match Fault::parse_list(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("raftcache-chaos: --faults: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let workloads = match Workload::parse_list(&args.workloads) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("raftcache-chaos: --workloads: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let out = args.out.clone();
    let cfg = Config {
        bin: args.bin,
        nodes: args.nodes,
        time: args.time,
        interval: args.interval,
        fault_duration: args.fault_duration,
        faults,
        workloads,
        clients: args.clients.max(1),
        seed,
        out: args.out,
        appendfsync: args.appendfsync,
        node_args: args.node_args,
        op_timeout: args.op_timeout_ms,
        think: args.think_ms,
        key_period: args.key_period,
        shape: Shape {
            keys: args.keys.max(1),
            locks: args.locks.max(1),
            lock_ttl: args.lock_ttl_ms,
            key_ttl: args.key_ttl_ms,
        },
        recovery_timeout: args.recovery_timeout,
        check_timeout: args.check_timeout,
        max_steps: args.max_steps,
        election_timeout: args.election_timeout_ms,
        keep_data: args.keep_data,
    };
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("raftcache-chaos: cannot start the runtime: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
    let result = runtime.block_on(async move {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        let run = run::run(cfg, cancel_rx);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r,
            _ = interrupt() => {
                eprintln!("raftcache-chaos: interrupted: stopping the clients and the nemesis, \
                           healing, saving the history (interrupt again to tear down at once)");
                let _ = cancel_tx.send(true);
                tokio::select! {
                    r = &mut run => r,
                    // Dropping the run future tears everything down (its guard).
                    _ = interrupt() => Err(anyhow::anyhow!("interrupted twice: torn down")),
                }
            }
        }
    });
    match result {
        Ok(summary) => {
            if args.json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("raftcache-chaos: {e}"),
                }
            } else {
                print!("{}", summary.render(&out));
            }
            ExitCode::from(summary.verdict.exit_code())
        }
        Err(e) => {
            eprintln!("raftcache-chaos: run failed: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
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

fn report(
    path: &Path,
    summary: Option<&Path>,
    output: &Path,
    max_steps: u64,
    timeout: Option<f64>,
) -> ExitCode {
    use raftcache_chaos::report::{render, CheckerView, Input};
    let history = match History::load(path) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("raftcache-chaos: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let summary: Option<serde_json::Value> = match summary {
        None => None,
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("raftcache-chaos: {}: {e}", p.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let checkers = match summary.as_ref().and_then(CheckerView::from_summary) {
        Some(c) => c,
        None => {
            let timeout = match timeout.map(Duration::try_from_secs_f64).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("raftcache-chaos: --timeout: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match check_all(&history, &Budget::new(max_steps, timeout)) {
                Ok(reports) => {
                    let per = raftcache_chaos::run::summary::ops_per_checker(&history);
                    reports
                        .iter()
                        .map(|r| CheckerView::from_report(r, per.get(r.checker).map(|p| p.1)))
                        .collect()
                }
                Err(e) => {
                    eprintln!("raftcache-chaos: {}: {e}", path.display());
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    let source = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let html = render(&Input { history: &history, checkers, summary: summary.as_ref(), source });
    if let Err(e) = std::fs::write(output, html) {
        eprintln!("raftcache-chaos: writing {}: {e}", output.display());
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}", output.display());
    ExitCode::from(EXIT_VALID)
}
