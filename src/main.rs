use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use weaveproxy::attach::Netlink;
use weaveproxy::config::{self, Cli};
use weaveproxy::intercept::{self, Weave, WeavewaitMount};
use weaveproxy::proxy::listen::{ListenAddr, Listener};
use weaveproxy::proxy::upstream::{DockerAddr, Upstream};
use weaveproxy::proxy::{self, Proxy};
use weaveproxy::router_api::RouterClient;

// The `weave` front end, compiled in as well: the image carries this one binary, and runs the
// front end (and the services it launches) as `weaveproxy weave ...`.
#[allow(dead_code)]
#[path = "bin/weave.rs"]
mod frontend;

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_weave = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "weave");
    if called_weave {
        return frontend::run_cli(args);
    }
    if args.get(1).is_some_and(|a| a == "weave") {
        args.remove(0);
        return frontend::run_cli(args);
    }
    let cli = Cli::parse_from(args);
    let settings = match config::load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weaveproxy: {e}");
            return ExitCode::from(2);
        }
    };
    weaveproxy::logging::init(&settings.log_level, &settings.log_target);
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers)
        .enable_all()
        .build();
    let runtime = match runtime {
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
    let weave = weave_setup(&settings, &docker).await?;
    tokio::spawn(weaveproxy::events::watch(weave.clone()));
    tokio::spawn(weaveproxy::events::attach_running(weave.clone()));
    let proxy = Arc::new(Proxy {
        upstream: Upstream::new(docker),
        weave: Some(weave),
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

async fn weave_setup(
    settings: &config::Settings,
    docker: &DockerAddr,
) -> anyhow::Result<Arc<Weave>> {
    use anyhow::Context;

    let weavewait = WeavewaitMount::parse(&settings.weavewait).map_err(anyhow::Error::msg)?;
    if let WeavewaitMount::Volume(name) = &weavewait {
        install_weavewait(name)?;
    }
    let router = RouterClient::new(&settings.weave_api).map_err(anyhow::Error::msg)?;
    let netlink = Netlink::new().context("opening a netlink socket")?;
    let client = intercept::DockerClient::new(docker.clone());
    Ok(Arc::new(Weave::new(
        client,
        settings.with_ipam,
        weavewait,
        settings.bridge.clone(),
        netlink,
        router,
    )))
}

/// In the proxy's container, the volume that carries weavewait to other containers is mounted
/// at /w; it gets this image's weavewait (a volume keeps old contents across image upgrades).
fn install_weavewait(volume: &str) -> anyhow::Result<()> {
    use anyhow::Context;

    let dir = std::path::Path::new("/w");
    let src = std::env::current_exe()?.with_file_name("weavewait");
    if !dir.is_dir() || !src.is_file() {
        anyhow::bail!(
            "--weavewait volume:{volume} needs the volume mounted at /w and weavewait beside the proxy (as in the weaveproxy image)"
        );
    }
    let new = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
    if std::fs::read(dir.join("w")).ok().as_deref() == Some(&new[..]) {
        return Ok(());
    }
    let tmp = dir.join(".w.new");
    std::fs::copy(&src, &tmp).context("installing weavewait into /w")?;
    std::fs::rename(&tmp, dir.join("w")).context("installing weavewait into /w")?;
    Ok(())
}

/// A hijacked stream holds two descriptors, and the usual soft limit of 1,024 would stop the
/// proxy at ~500 attached terminals; the hard limit is what the administrator allows (the
/// daemon raises its own the same way).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
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
