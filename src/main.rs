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
    // Before anything listens: a TLS file that cannot be used stops the proxy here, in one line,
    // rather than leaving a port that serves without the certificate.
    let tls = match Tls::load(&settings) {
        Ok(t) => t,
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
    match runtime.block_on(run(settings, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("weaveproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The loaded TLS configs: for the tcp listeners, and towards the daemon.
struct Tls {
    listen: Option<(Arc<rustls::ServerConfig>, bool)>,
    daemon: Option<Arc<rustls::ClientConfig>>,
}

impl Tls {
    fn load(settings: &config::Settings) -> Result<Tls, weaveproxy::tls::TlsError> {
        let listen = match settings.listen_tls() {
            Some(t) => Some((
                weaveproxy::tls::server_config(&t.files, t.verify)?,
                t.verify,
            )),
            None => None,
        };
        let daemon = match settings.daemon_tls() {
            Some(files) => Some(weaveproxy::tls::client_config(&files)?),
            None => None,
        };
        Ok(Tls { listen, daemon })
    }
}

async fn run(settings: config::Settings, tls: Tls) -> anyhow::Result<()> {
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
    let mut upstream = Upstream::new(docker.clone());
    if let Some(config) = tls.daemon {
        upstream = upstream.with_tls(config).map_err(anyhow::Error::msg)?;
    }
    let mut listeners = Vec::new();
    for addr in &addrs {
        let mut l = Listener::bind(addr, like.as_deref())
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        if let Some((config, _)) = &tls.listen {
            l = l.with_tls(config.clone());
        }
        if l.exposed_without_tls() {
            tracing::warn!(
                "{} accepts plain connections from other hosts: whoever reaches it has root on this host; use --tlsverify, or listen on 127.0.0.1 or a unix socket",
                l.local_addr()
            );
        }
        listeners.push(l);
    }
    let mode = match &tls.listen {
        Some((_, true)) => " (TLS, client certificates verified)",
        Some((_, false)) => " (TLS)",
        None => "",
    };
    let bound: Vec<String> = listeners
        .iter()
        .map(|l| match l.is_tls() {
            true => format!("{}{mode}", l.local_addr()),
            false => l.local_addr(),
        })
        .collect();
    tracing::info!(
        "weaveproxy {} listening on {}; docker daemon at {}{}",
        env!("CARGO_PKG_VERSION"),
        bound.join(" "),
        docker,
        if upstream.is_tls() { " (TLS)" } else { "" }
    );
    let weave = weave_setup(&settings, &upstream).await?;
    tokio::spawn(weaveproxy::events::watch(weave.clone()));
    tokio::spawn(weaveproxy::events::attach_running(weave.clone()));
    let proxy = Arc::new(Proxy {
        upstream,
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
    upstream: &Upstream,
) -> anyhow::Result<Arc<Weave>> {
    use anyhow::Context;

    let weavewait = WeavewaitMount::parse(&settings.weavewait).map_err(anyhow::Error::msg)?;
    if let WeavewaitMount::Volume(name) = &weavewait {
        install_weavewait(name)?;
    }
    let router = RouterClient::new(&settings.weave_api).map_err(anyhow::Error::msg)?;
    let netlink = Netlink::new().context("opening a netlink socket")?;
    let dns_client =
        weaveproxy::dns_api::DnsClient::new(&settings.dns_api).map_err(anyhow::Error::msg)?;
    let dns_address = match settings.dns_address.as_str() {
        "" => None,
        a => Some(a.parse().context("dns_address")?),
    };
    let dns = intercept::Dns::new(
        intercept::DnsMode::from_flags(settings.with_dns, settings.without_dns),
        dns_client,
        dns_address,
    );
    let client = intercept::DockerClient::new(upstream.clone());
    Ok(Arc::new(
        Weave::new(
            client,
            settings.with_ipam,
            weavewait,
            settings.bridge.clone(),
            netlink,
            router,
        )
        .with_dns(dns)
        .with_rewrite_hosts(!settings.no_rewrite_hosts),
    ))
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
