//! The `raftcache` server binary.

/// glibc's malloc spends a third of the CPU of a busy node in its arena locks
/// and consolidation; mimalloc's per-thread heaps avoid both.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::{Arc, OnceLock};

use raftcache_node::cluster::bootstrap;
use raftcache_node::config::{Args, Config};
use raftcache_node::config_file::{self, ConfigError};
use raftcache_node::metrics;
use raftcache_node::server::{self, Shared};
use tokio_util::sync::CancellationToken;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Maps redis-server's log levels onto tracing filters.
fn filter(level: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("RUST_LOG") {
        return f;
    }
    let directive = match level {
        "debug" => "debug",
        "verbose" => "info,raftcache_node=debug",
        "notice" => "info,openraft=warn",
        "warning" => "warn",
        "nothing" => "off",
        other => other,
    };
    EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// openraft events that report routine cluster life, hidden unless the log
/// level is `debug` or RUST_LOG is set:
/// - every failed RPC to a peer that is restarting, paused or slow, which
///   openraft logs at WARN and again at ERROR ("RPCError") before retrying
///   with backoff (as it does for a batch refused as too large, which it
///   splits), with the progress updates that follow at WARN;
/// - late answers and messages of a superseded vote or membership ("A
///   message will be ignored because vote changed"), and a restarted
///   memory-only follower's log starting over ("follower log is
///   reverted", allowed by `loosen-follower-log-revert`);
/// - the answer to a proposal nobody waits for any more
///   ("OneshotConsumer.tx.send: is_ok: false").
///
/// The node reports a peer that stays unreachable itself
/// (`raftcache_raft::network::PeerHealth`: INFO at once, WARN after 10 s).
/// openraft's other errors (storage, a stopped Raft core) still show. The
/// events are told apart by target, level and field names, as openraft
/// 0.9.25 emits them; tests/cluster/test_logs.py fails if a routine restart
/// logs an ERROR or more than a few WARN lines again.
fn routine_openraft(meta: &Metadata<'_>) -> bool {
    if !meta.is_event() || !meta.target().starts_with("openraft") {
        return false;
    }
    let has = |field: &str| meta.fields().field(field).is_some();
    match (meta.target(), *meta.level()) {
        ("openraft::replication", Level::WARN) => true,
        // The failed RPC; a storage error there has `error` and shows.
        ("openraft::replication", Level::ERROR) => has("err"),
        ("openraft::engine::handler::replication_handler", Level::WARN) => true,
        ("openraft::progress::entry", Level::WARN) => true,
        ("openraft::core::raft_core", Level::WARN) => true,
        // A vote request to a peer that failed or timed out.
        ("openraft::core::raft_core", Level::ERROR) => has("target"),
        // The answer to a proposal whose caller stopped waiting (a request
        // that timed out, a forwarded batch dropped on a leader change).
        ("openraft::raft::responder::impls", Level::WARN) => true,
        _ => false,
    }
}

/// Installs the log subscriber: `--loglevel` (or RUST_LOG) as the filter,
/// routine openraft events left out (see [`routine_openraft`]), lines in
/// `--log-format` text or JSON.
fn init_logging(args: &Args) {
    let keep_routine = args.loglevel == "debug" || std::env::var_os("RUST_LOG").is_some();
    let routine = filter_fn(move |meta| keep_routine || !routine_openraft(meta));
    let layer = match args.log_format.as_str() {
        "json" => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        // Colours only on a terminal: not in files, pipes or container logs.
        _ => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter(&args.loglevel).and(routine)))
        .init();
}

/// The flags, with the config file and the environment behind them; exits on
/// --help, --version, --print-config and on any error (one line).
fn read_args() -> Args {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let fail = |e: ConfigError| -> ! {
        match e {
            ConfigError::Clap(e) => e.exit(),
            ConfigError::Invalid(line) => {
                eprintln!("raftcache: {line}");
                std::process::exit(2);
            }
        }
    };
    let args = config_file::parse_from(argv.clone()).unwrap_or_else(|e| fail(e));
    // The cluster settings are parsed (and so checked) here, once.
    if let Err(line) = args.cluster_settings() {
        fail(ConfigError::Invalid(line));
    }
    if args.print_config {
        print!("{}", config_file::render(argv).unwrap_or_else(|e| fail(e)));
        std::process::exit(0);
    }
    args
}

fn main() -> anyhow::Result<()> {
    let args = read_args();
    if args.list_commands {
        for spec in raftcache_sm::command::all() {
            println!("{}", spec.name);
        }
        return Ok(());
    }
    init_logging(&args);
    warn_unsafe_switches(&args);
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(%info, "panic");
    }));
    // One thread does everything with --threads 1: a current-thread runtime
    // has no work-stealing queues or cross-thread wake-ups, which co-located
    // nodes (three on two cores) pay for on every message.
    let mut builder = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signals.cancel();
        });
        let cluster_settings = args.cluster_settings().map_err(anyhow::Error::msg)?;
        raftcache_cluster::observe::set(Box::new(metrics::Recorder));
        raftcache_raft::network::set_append_observer(metrics::observe_append);
        let config = Config::new(args);
        // Bind the client and metrics ports first: a taken port should fail fast.
        let listeners = server::bind(&config).await?;
        let metrics_listener = metrics::bind(&config.args).await?;
        let sources: Arc<OnceLock<metrics::Sources>> = Arc::default();
        let registry = Arc::new(metrics::registry(sources.clone()));
        tokio::spawn(metrics::serve(metrics_listener, registry, shutdown.clone()));
        let started = tokio::select! {
            started = bootstrap::start(&cluster_settings, shutdown.clone()) => started?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let cluster = started.cluster.clone();
        cluster.sm.set_snapshot_observer(Box::new(metrics::observe_snapshot));
        let shared = Arc::new(Shared::new(config, cluster.clone()));
        let log = started.data.as_ref().map(|data| data.log.clone());
        let _ = sources.set(metrics::Sources { shared: shared.clone(), log });
        server::run(shared, listeners, shutdown).await;
        cluster.shutdown().await;
        if let Some(data) = &started.data {
            data.close_cleanly();
        }
        if let Some(dir) = started.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    })
}

/// Says loudly, once per switch, that this node runs with a test-only
/// unsafe switch (`--unsafe-test-switch`): it is not safe to keep data in.
fn warn_unsafe_switches(args: &Args) {
    let Ok(settings) = args.cluster_settings() else { return };
    let names = settings.unsafe_switches.names();
    for (name, what) in raftcache_cluster::settings::UnsafeSwitches::NAMES {
        if names.contains(&name) {
            tracing::warn!(
                switch = name,
                "UNSAFE TEST SWITCH ON: {what}; this node is deliberately broken for the chaos \
                 harness's own tests and must never hold real data"
            );
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
