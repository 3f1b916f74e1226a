//! The `raftcache` server binary.

use std::sync::Arc;

use clap::Parser;
use raftcache_node::config::{Args, Config};
use raftcache_node::server::{self, Shared};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Maps redis-server's log levels onto tracing filters.
fn filter(level: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("RUST_LOG") {
        return f;
    }
    let directive = match level {
        "debug" => "debug",
        "verbose" => "info,raftcache_node=debug",
        "notice" => "info",
        "warning" => "warn",
        "nothing" => "off",
        other => other,
    };
    EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.list_commands {
        for spec in raftcache_sm::command::all() {
            println!("{}", spec.name);
        }
        return Ok(());
    }
    tracing_subscriber::fmt().with_env_filter(filter(&args.loglevel)).init();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(%info, "panic");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = Config::new(args);
        let listeners = server::bind(&config).await?;
        let shared = Arc::new(Shared::new(config));
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signals.cancel();
        });
        server::run(shared, listeners, shutdown).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
