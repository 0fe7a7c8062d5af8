use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use weaveproxy::config::{self, Cli};
use weaveproxy::proxy::listen::{ListenAddr, Listener};
use weaveproxy::proxy::upstream::{DockerAddr, Upstream};
use weaveproxy::proxy::{self, Proxy};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match config::load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weaveproxy: {e}");
            return ExitCode::from(2);
        }
    };
    weaveproxy::logging::init(&settings.log_level, &settings.log_target);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weaveproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("weaveproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: config::Settings) -> anyhow::Result<()> {
    use anyhow::Context;

    let docker: DockerAddr = settings.docker_host.parse().map_err(anyhow::Error::msg)?;
    let addrs = settings
        .listen
        .iter()
        .map(|a| a.parse::<ListenAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let like = match &docker {
        DockerAddr::Unix(p) => Some(p.clone()),
        DockerAddr::Tcp(_) => None,
    };
    let mut listeners = Vec::new();
    for addr in &addrs {
        let l = Listener::bind(addr, like.as_deref())
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(l);
    }
    let bound: Vec<String> = listeners.iter().map(|l| l.local_addr()).collect();
    tracing::info!(
        "weaveproxy {} listening on {}; docker daemon at {}",
        env!("CARGO_PKG_VERSION"),
        bound.join(" "),
        docker
    );
    let proxy = Arc::new(Proxy {
        upstream: Upstream::new(docker),
        weave: None,
    });
    proxy::serve(
        proxy,
        listeners,
        shutdown_signal(),
        Duration::from_secs(settings.shutdown_timeout),
    )
    .await;
    tracing::info!("weaveproxy stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
