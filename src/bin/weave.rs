//! `weave`: the front end. Each service is a container from the weaveproxy image:
//! `weave launch` (the single-host network: bridge + IPAM), `weave launch-dns` (weaveDNS),
//! `weave launch-proxy`, and their `stop-*`, `proxy-env`, `proxy-config`, `status` and `ps`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

/// `println!`, except that a stdout its reader has closed (`weave status | head -1`) ends the
/// process as SIGPIPE ends other CLIs, not with a panic. SIGPIPE itself stays ignored (Rust's
/// default): a daemon that closes its socket must not kill the front end.
macro_rules! say {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

fn say(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| writeln!(out)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        Err(e) => {
            eprintln!("weave: writing to stdout: {e}");
            std::process::exit(1);
        }
    }
}

fn die_of_sigpipe() -> ! {
    use nix::sys::signal::{SigHandler, Signal, raise, signal};
    // SAFETY: the default disposition runs no handler code of ours.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = raise(Signal::SIGPIPE);
    // Not reached; 128 + SIGPIPE, as a shell reports a process that SIGPIPE ended.
    std::process::exit(141)
}

const PROXY: &str = "weaveproxy";
const ROUTER: &str = "weave";
const DNS: &str = "weavedns";
const WEAVEWAIT_VOLUME: &str = "weaveproxy-weavewait";
const DB_VOLUME: &str = "weavedb";
/// As in compose.yaml.
const SERVICE_CAPS: &[&str] = &["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"];

#[derive(Parser)]
#[command(
    name = "weave",
    version,
    about = "Weave network front end: launch and inspect the weave services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the weave network service (bridge `weave` and IP address management)
    Launch {
        #[command(flatten)]
        opts: LaunchOpts,
    },
    /// Stop the weave network service
    Stop,
    /// Start weaveDNS, with ADDR/CIDR as its address on the weave network; FLAGS go to it
    /// (--domain, --upstream, --listen-address, --http-addr)
    LaunchDns {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "[ADDR/CIDR] FLAGS"
        )]
        args: Vec<String>,
    },
    /// Stop weaveDNS
    StopDns,
    /// Start the proxy; FLAGS go to it (-H, -D, --with-ipam, --with-dns, --tlsverify, ...)
    LaunchProxy {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "FLAGS"
        )]
        flags: Vec<String>,
    },
    /// Stop the proxy
    StopProxy,
    /// Print `export DOCKER_HOST=...` for the proxy
    ProxyEnv,
    /// Print the docker client flag `-H=...` for the proxy
    ProxyConfig,
    /// Report the weave services
    Status,
    /// List attached containers with their MAC and addresses
    Ps,
    /// Run the network service in this process (the `weave` container's command)
    #[command(hide = true)]
    ServeNetwork {
        #[command(flatten)]
        opts: weaveproxy::network::Options,
        /// Bridge the service owns
        #[arg(long, default_value = "weave")]
        bridge: String,
    },
    /// Run weaveDNS in this process (the `weavedns` container's command)
    #[command(hide = true)]
    ServeDns {
        #[command(flatten)]
        opts: weaveproxy::dns::Options,
    },
}

#[derive(clap::Args)]
struct LaunchOpts {
    /// Range addresses are allocated from [default: 10.32.0.0/12]
    #[arg(long, value_name = "CIDR")]
    ipalloc_range: Option<String>,
    /// Subnet for containers that ask for none in particular [default: the whole range]
    #[arg(long, value_name = "CIDR")]
    ipalloc_default_subnet: Option<String>,
    /// Other hosts to join (as in `weave launch host1`): needs Weave Net's router
    #[arg(value_name = "PEER")]
    peers: Vec<String>,
}

fn image() -> String {
    std::env::var("WEAVEPROXY_IMAGE").unwrap_or_else(|_| "weaveworks/weaveproxy:latest".into())
}

fn main() -> ExitCode {
    run_cli(std::env::args_os())
}

/// Also reached as `weaveproxy weave ...`: the image carries one multi-call binary.
pub fn run_cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    if let Command::ServeNetwork { .. } | Command::ServeDns { .. } = cli.command {
        weaveproxy::logging::init("info", "auto");
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weave: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // A failure to talk to the daemon names the address used: it is chosen by rules (see
        // `daemon_host_from`), not always DOCKER_HOST.
        Err(e) if e.chain().any(|c| c.is::<bollard::errors::Error>()) => {
            eprintln!("weave: Docker daemon at {}: {e:#}", daemon_host());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weave: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon's own socket, where the services run beside it.
const LOCAL_SOCKET: &str = "/var/run/docker.sock";

/// Where the front end reaches the daemon. `weave` is a host-local tool whose services run
/// beside the daemon, so it always talks to the daemon itself: after `eval "$(weave
/// proxy-env)"` DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) name the proxy, which
/// `weave stop-proxy` must not send its request through. In order: WEAVE_DOCKER_HOST; the local
/// socket when it exists; DOCKER_HOST (a remote daemon); the local socket's address.
fn daemon_host_from(
    weave_docker_host: Option<&str>,
    local_socket_exists: bool,
    docker_host: Option<&str>,
) -> String {
    let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
    if let Some(h) = non_empty(weave_docker_host) {
        // A bare path, as DOCKER_HOST never takes one but users type.
        return match h.starts_with('/') {
            true => format!("unix://{h}"),
            false => h,
        };
    }
    if local_socket_exists {
        return format!("unix://{LOCAL_SOCKET}");
    }
    non_empty(docker_host).unwrap_or_else(|| format!("unix://{LOCAL_SOCKET}"))
}

fn daemon_host() -> String {
    daemon_host_from(
        std::env::var("WEAVE_DOCKER_HOST").ok().as_deref(),
        std::path::Path::new(LOCAL_SOCKET).exists(),
        std::env::var("DOCKER_HOST").ok().as_deref(),
    )
}

fn docker() -> anyhow::Result<Docker> {
    Ok(Docker::connect_with_host(&daemon_host())?)
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Launch { opts } => launch(opts).await,
        Command::Stop => {
            stop(ROUTER, "weave is not running.").await?;
            remove_idle_bridge().await
        }
        Command::LaunchDns { args } => launch_dns(args).await,
        Command::StopDns => stop(DNS, "weaveDNS is not running.").await,
        Command::LaunchProxy { flags } => launch_proxy(flags).await,
        Command::StopProxy => stop(PROXY, "Proxy is not running.").await,
        Command::ProxyEnv => {
            let (addr, tls) = proxy_addr().await?;
            say!("export DOCKER_HOST={addr}");
            match tls {
                ClientTls::Verify => say!("export DOCKER_TLS_VERIFY=1"),
                ClientTls::Encrypt => say!("export DOCKER_TLS=1"),
                ClientTls::Off => {}
            }
            Ok(())
        }
        Command::ProxyConfig => {
            let (addr, tls) = proxy_addr().await?;
            match tls {
                ClientTls::Verify => say!("--tlsverify -H={addr}"),
                ClientTls::Encrypt => say!("--tls -H={addr}"),
                ClientTls::Off => say!("-H={addr}"),
            }
            Ok(())
        }
        Command::Status => status().await,
        Command::Ps => ps().await,
        Command::ServeNetwork { opts, bridge } => serve_network(opts, bridge).await,
        Command::ServeDns { opts } => serve_dns(opts).await,
    }
}

/// Running → error; stopped → removed, so the name is free; absent → fine.
async fn check_not_running(d: &Docker, name: &str, stop_cmd: &str) -> anyhow::Result<()> {
    match d.inspect_container(name, None).await {
        Ok(c) => {
            if c.state.and_then(|s| s.running).unwrap_or(false) {
                anyhow::bail!("{name} is already running; stop it first with `{stop_cmd}`");
            }
            d.remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await?;
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn check_image(d: &Docker) -> anyhow::Result<()> {
    match d.inspect_image(&image()).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => anyhow::bail!(
            "image {} not found: build it with `scripts/build-image` (or set WEAVEPROXY_IMAGE)",
            image()
        ),
        Err(e) => Err(e.into()),
    }
}

/// The daemon's socket on its host, bind-mounted into the services (they run beside the
/// daemon): the one the front end uses, or for a remote daemon the usual path on its host.
fn docker_socket() -> String {
    match daemon_host().strip_prefix("unix://") {
        Some(path) => path.to_string(),
        None => LOCAL_SOCKET.into(),
    }
}

async fn run_service(
    d: &Docker,
    name: &str,
    entrypoint: &[&str],
    args: Vec<String>,
    mut binds: Vec<String>,
) -> anyhow::Result<String> {
    binds.push(format!("{}:/var/run/docker.sock", docker_socket()));
    let body = ContainerCreateBody {
        image: Some(image()),
        entrypoint: Some(entrypoint.iter().map(|s| s.to_string()).collect()),
        cmd: Some(args),
        // When DOCKER_HOST is the proxy, the proxy leaves its own services alone.
        env: Some(vec![
            "WEAVE_CIDR=none".into(),
            format!("WEAVEPROXY_WEAVEWAIT=volume:{WEAVEWAIT_VOLUME}"),
        ]),
        host_config: Some(HostConfig {
            // Attaching needs the host's network and process namespaces, and the capabilities
            // to enter other namespaces (SYS_ADMIN, SYS_PTRACE for /proc/PID/ns) and change
            // links and the host's iptables (NET_ADMIN, NET_RAW); no more than that.
            network_mode: Some("host".into()),
            pid_mode: Some("host".into()),
            cap_add: Some(SERVICE_CAPS.iter().map(|c| c.to_string()).collect()),
            binds: Some(binds),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = d
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.into()),
                ..Default::default()
            }),
            body,
        )
        .await?;
    d.start_container(&created.id, None).await?;
    Ok(created.id)
}

/// How long a service gets to answer after its container starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Waits for `ready`. A container that has exited, or been restarted by its policy, is dead at
/// once: waiting would only watch the same error repeat. On failure the container is removed
/// (a restart loop would otherwise hold the name) and the error carries its log, once, with
/// each path in `mounts` (inside → host) followed by the host file it came from.
async fn wait_ready<F, Fut>(
    d: &Docker,
    name: &str,
    mounts: &[(String, String)],
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + READY_WITHIN;
    let why = loop {
        let dead = match d.inspect_container(name, None).await {
            Ok(c) => {
                let s = c.state.unwrap_or_default();
                !s.running.unwrap_or(false)
                    || s.restarting.unwrap_or(false)
                    || c.restart_count.unwrap_or(0) > 0
            }
            Err(e) if not_found(&e) => true,
            Err(e) => return Err(e.into()),
        };
        if dead {
            break "failed to start";
        }
        // The address answering is not enough: another process may hold it (and this
        // service then dies trying to bind it). Ready is when the service itself says so.
        if ready().await && announced(d, name).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break "did not become ready within 30 s";
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = logs(d, name).await;
    for (inside, host) in mounts {
        log = log.replace(inside.as_str(), &format!("{inside} (host file {host})"));
    }
    let _ = d
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    match log.lines().count() {
        0 => anyhow::bail!("{name} {why} (no log); its container is removed"),
        1 => anyhow::bail!("{name} {why}: {}", log.trim()),
        _ => anyhow::bail!("{name} {why}; its container is removed. Its log:\n{log}"),
    }
}

/// The container's last lines, each once: the restart policy may have run the service more
/// than once before it was seen dead, and each run logs the same error.
/// The service has logged that it listens (each of ours does, at info, once it has bound
/// every address; a failure to bind is an error line instead).
async fn announced(d: &Docker, name: &str) -> bool {
    let mut s = d.logs(
        name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: "all".into(),
            ..Default::default()
        }),
    );
    while let Some(Ok(chunk)) = s.next().await {
        if chunk
            .to_string()
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains(" listening"))
        {
            return true;
        }
    }
    false
}

async fn logs(d: &Docker, name: &str) -> String {
    let mut out = String::new();
    let mut s = d.logs(
        name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: "20".into(),
            ..Default::default()
        }),
    );
    while let Some(Ok(chunk)) = s.next().await {
        out.push_str(&chunk.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    out.lines()
        .filter(|l| seen.insert(*l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A clap error as one line: its first, without the `error: ` prefix.
fn clap_line(e: clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The service's own parser, run here on the arguments its container will get: the front end
/// is the same binary, and a bad flag is then one line at once rather than a dead container.
fn parse_service(args: &[String]) -> anyhow::Result<Command> {
    let cli = Cli::try_parse_from(std::iter::once("weave").chain(args.iter().map(String::as_str)))
        .map_err(|e| anyhow::anyhow!("{}", clap_line(e)))?;
    Ok(cli.command)
}

async fn launch(opts: LaunchOpts) -> anyhow::Result<()> {
    if !opts.peers.is_empty() {
        anyhow::bail!(
            "cannot join {}: this network service is single-host. To span hosts, run Weave Net's router on each host and point each proxy at it (weave launch-proxy --weave-api http://127.0.0.1:6784)",
            opts.peers.join(" ")
        );
    }
    let mut args = vec!["serve-network".to_string()];
    if let Some(r) = opts.ipalloc_range {
        args.extend(["--ipalloc-range".into(), r]);
    }
    if let Some(s) = opts.ipalloc_default_subnet {
        args.extend(["--ipalloc-default-subnet".into(), s]);
    }
    check_network_args(&args).context("weave launch")?;
    let d = docker()?;
    check_image(&d).await?;
    check_not_running(&d, ROUTER, "weave stop").await?;
    let binds = vec![format!("{DB_VOLUME}:/weavedb")];
    let id = run_service(&d, ROUTER, &["/weaveproxy", "weave"], args, binds).await?;
    let router = weaveproxy::router_api::RouterClient::default();
    wait_ready(&d, ROUTER, &[], || async { router.status().await.is_ok() }).await?;
    say!("{id}");
    Ok(())
}

/// What the network service checks at start-up: its flags, and the range and default subnet
/// together.
fn check_network_args(args: &[String]) -> anyhow::Result<()> {
    let Command::ServeNetwork { opts, .. } = parse_service(args)? else {
        anyhow::bail!("not the network service's arguments");
    };
    let subnet = opts.ipalloc_default_subnet.unwrap_or(opts.ipalloc_range);
    weaveproxy::network::alloc::Allocator::new(opts.ipalloc_range, subnet)
        .map_err(|e| anyhow::anyhow!("invalid --ipalloc-range / --ipalloc-default-subnet: {e}"))?;
    Ok(())
}

/// What weaveDNS checks before it serves: its flags and its domain.
fn check_dns_args(args: &[String]) -> anyhow::Result<()> {
    let Command::ServeDns { opts } = parse_service(args)? else {
        anyhow::bail!("not weaveDNS's arguments");
    };
    weaveproxy::dns::parse_domain(&opts.domain)?;
    Ok(())
}

/// What the proxy refuses at start-up in its settings (src/config.rs), checked here first. A
/// `--config` file is read inside the container, so with one only the flags are checked here
/// (and `None` returned).
fn check_proxy_flags(flags: &[String]) -> anyhow::Result<Option<weaveproxy::config::Settings>> {
    use weaveproxy::proxy::listen::ListenAddr;
    use weaveproxy::proxy::upstream::DockerAddr;

    let cli = weaveproxy::config::Cli::try_parse_from(
        std::iter::once("weaveproxy").chain(flags.iter().map(String::as_str)),
    )
    .map_err(|e| anyhow::anyhow!("{}", clap_line(e)))?;
    if cli.config.is_some() {
        return Ok(None);
    }
    // The proxy's container gets only this of WEAVEPROXY_*; HOME and DOCKER_CERT_PATH are where
    // the TLS files the front end mounts default from.
    let mut env = vec![(
        "WEAVEPROXY_WEAVEWAIT".to_string(),
        format!("volume:{WEAVEWAIT_VOLUME}"),
    )];
    for k in ["HOME", "DOCKER_CERT_PATH"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    let settings = weaveproxy::config::load_from(&cli, env)?;
    settings
        .docker_host
        .parse::<DockerAddr>()
        .map_err(anyhow::Error::msg)?;
    for a in &settings.listen {
        a.parse::<ListenAddr>().map_err(anyhow::Error::msg)?;
        if a.starts_with("tcp://") && a.ends_with(":0") {
            // The kernel would pick the port, and `proxy-env` could not say which.
            anyhow::bail!("listen address {a}: give the port the proxy is to listen on");
        }
    }
    Ok(Some(settings))
}

/// The proxy's TLS files loaded as it loads them, here on the host where they are: a key that
/// does not match its certificate, say, is one line naming the host's files.
fn check_proxy_tls(settings: &weaveproxy::config::Settings) -> anyhow::Result<()> {
    // The error's text already carries its source: printed once, not again as a cause.
    let one_line = |e: weaveproxy::tls::TlsError| anyhow::anyhow!("{e}");
    if let Some(t) = settings.listen_tls() {
        weaveproxy::tls::server_config(&t.files, t.verify).map_err(one_line)?;
    }
    if let Some(files) = settings.daemon_tls() {
        weaveproxy::tls::client_config(&files).map_err(one_line)?;
    }
    Ok(())
}

/// `[ADDR/CIDR] [FLAGS...]` → the service's arguments, and where its HTTP API will listen.
fn dns_args(args: Vec<String>) -> anyhow::Result<(Vec<String>, String)> {
    let mut out = vec!["serve-dns".to_string()];
    let mut rest = args.into_iter().peekable();
    if let Some(first) = rest.next_if(|a| !a.starts_with('-')) {
        let cidr: weaveproxy::weave_cidr::Cidr = first
            .parse()
            .map_err(|_| anyhow::anyhow!("{first:?} is not ADDR/CIDR (e.g. 10.2.4.1/24)"))?;
        if cidr.is_network() {
            anyhow::bail!("{cidr} is a network address; weaveDNS needs a host address in it");
        }
        out.extend(["--weave-cidr".to_string(), cidr.to_string()]);
    }
    let mut http = weaveproxy::dns::DEFAULT_HTTP_ADDR.to_string();
    let mut it = rest.peekable();
    while let Some(a) = it.next() {
        if a == "--http-addr" {
            if let Some(v) = it.peek() {
                http = v.clone();
            }
        } else if let Some(v) = a.strip_prefix("--http-addr=") {
            http = v.to_string();
        }
        out.push(a);
    }
    Ok((out, http))
}

async fn launch_dns(args: Vec<String>) -> anyhow::Result<()> {
    let (args, http) = dns_args(args)?;
    check_dns_args(&args).context("weavedns")?;
    let d = docker()?;
    check_image(&d).await?;
    check_not_running(&d, DNS, "weave stop-dns").await?;
    let id = run_service(&d, DNS, &["/weaveproxy", "weave"], args, Vec::new()).await?;
    let api = weaveproxy::dns_api::DnsClient::new(&http).map_err(anyhow::Error::msg)?;
    wait_ready(&d, DNS, &[], || async { api.status().await.is_ok() }).await?;
    say!("{id}");
    Ok(())
}

async fn launch_proxy(flags: Vec<String>) -> anyhow::Result<()> {
    let settings = check_proxy_flags(&flags).context("weaveproxy")?;
    let mut binds = vec![format!("{WEAVEWAIT_VOLUME}:/w")];
    let default_dir = weaveproxy::tls::default_dir(
        std::env::var("DOCKER_CERT_PATH").ok().as_deref(),
        std::env::var("HOME").ok().as_deref(),
    );
    let (args, files) = tls_files(flags, &default_dir).map_err(anyhow::Error::msg)?;
    // TLS files live on the host: each is mounted read-only where the proxy reads it. A missing
    // one must stop us here, or docker would make an empty directory of that name.
    let mut mounts = Vec::new();
    for (flag, host, inside) in files {
        let host = std::fs::canonicalize(&host)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| anyhow::anyhow!("{flag} {}: no such file", host.display()))?;
        binds.push(format!("{}:{inside}:ro", host.display()));
        mounts.push((inside.to_string(), host.display().to_string()));
    }
    // After the check for missing files, whose message names the flag.
    if let Some(settings) = &settings {
        check_proxy_tls(settings).context("weaveproxy")?;
    }
    let addrs = listen_addrs(&args);
    let dirs = unix_listener_dirs(&addrs)?;
    let d = docker()?;
    check_image(&d).await?;
    check_not_running(&d, PROXY, "weave stop-proxy").await?;
    // A unix listener is made inside the proxy's container: its directory is the host's, at the
    // same path, so that the socket is where the host's clients (and the check below) look.
    for dir in dirs {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
        let bind = format!("{dir}:{dir}");
        if !binds.contains(&bind) {
            binds.push(bind);
        }
    }
    let id = run_service(&d, PROXY, &["/weaveproxy"], args, binds).await?;
    wait_ready(&d, PROXY, &mounts, || {
        let addrs = addrs.clone();
        async move { addrs.iter().all(|a| listening(a)) }
    })
    .await?;
    say!("{id}");
    Ok(())
}

/// The proxy's TLS file flags, and where each file is mounted in its container.
const TLS_FILE_FLAGS: &[(&str, &str)] = &[
    ("--tlscacert", "/tls/ca.pem"),
    ("--tlscert", "/tls/cert.pem"),
    ("--tlskey", "/tls/key.pem"),
    ("--docker-tlscacert", "/tls/docker-ca.pem"),
    ("--docker-tlscert", "/tls/docker-cert.pem"),
    ("--docker-tlskey", "/tls/docker-key.pem"),
];

/// (flag, file on the host, path in the proxy's container).
type TlsMount = (&'static str, std::path::PathBuf, &'static str);

/// Rewrites the proxy's flags so that it reads its TLS files from read-only mounts: each file
/// flag (`--x v` or `--x=v`) points inside the container, and a file left to its default is
/// taken from the host's default place (`DOCKER_CERT_PATH`, else `~/.docker`) as the proxy
/// would on the host. Returns the flags and (flag, host file, path inside) to mount.
fn tls_files(
    flags: Vec<String>,
    default_dir: &std::path::Path,
) -> Result<(Vec<String>, Vec<TlsMount>), String> {
    let mut args = Vec::new();
    let mut files = Vec::new();
    let mut it = flags.into_iter();
    while let Some(flag) = it.next() {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        let Some((name, inside)) = TLS_FILE_FLAGS.iter().find(|(f, _)| *f == name).copied() else {
            args.push(flag);
            continue;
        };
        let value = match value {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a file"))?,
        };
        files.retain(|(f, _, _)| *f != name);
        files.push((name, std::path::PathBuf::from(value), inside));
        args.retain(|a: &String| !a.starts_with(&format!("{name}=")));
        args.push(format!("{name}={inside}"));
    }
    let verify = flag_on(&args, "--tlsverify");
    let defaults: &[(&str, bool)] = &[
        ("--tlscacert", verify),
        ("--tlscert", verify || flag_on(&args, "--tls")),
        ("--tlskey", verify || flag_on(&args, "--tls")),
        ("--docker-tlscacert", flag_on(&args, "--docker-tlsverify")),
        ("--docker-tlscert", flag_on(&args, "--docker-tlsverify")),
        ("--docker-tlskey", flag_on(&args, "--docker-tlsverify")),
    ];
    for (name, needed) in defaults {
        if !needed || files.iter().any(|(f, _, _)| f == name) {
            continue;
        }
        let Some((name, inside)) = TLS_FILE_FLAGS.iter().find(|(f, _)| f == name).copied() else {
            continue;
        };
        let file = inside.rsplit('/').next().unwrap_or(inside);
        let file = file.strip_prefix("docker-").unwrap_or(file);
        files.push((name, default_dir.join(file), inside));
        args.push(format!("{name}={inside}"));
    }
    Ok((args, files))
}

/// Whether a boolean flag of the proxy is on in `args`: `--x`, `--x=true` or `--x true`; the
/// last one wins, as with the proxy's own parser.
fn flag_on(args: &[String], name: &str) -> bool {
    let mut on = false;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == name {
            on = it.peek().map(|v| v.as_str()) != Some("false");
        } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            on = v == "true";
        }
    }
    on
}

/// The directories of the unix listeners among `addrs`. Each is mounted into the proxy's
/// container, so `/` (the host's whole tree) is refused: such a socket needs a directory.
fn unix_listener_dirs(addrs: &[String]) -> anyhow::Result<Vec<String>> {
    let mut dirs = Vec::new();
    for path in addrs.iter().filter_map(|a| a.strip_prefix("unix://")) {
        let dir = std::path::Path::new(path)
            .parent()
            .filter(|d| d.is_absolute() && *d != std::path::Path::new("/"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "-H unix://{path}: the socket needs a directory of its own (e.g. unix:///var/run/weave/weave.sock), which is mounted into the proxy's container"
                )
            })?;
        dirs.push(dir.display().to_string());
    }
    Ok(dirs)
}

/// Unix sockets of the proxy that are still on the host after it stopped (it removes them
/// itself when it can shut down in time).
fn remove_unix_sockets(args: &[String]) {
    use std::os::unix::fs::FileTypeExt;
    for path in listen_addrs(args)
        .iter()
        .filter_map(|a| a.strip_prefix("unix://"))
    {
        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        // A socket someone still answers on is not the stopped proxy's (it may be the
        // daemon's own): only a dead one is removed.
        if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn listening(addr: &str) -> bool {
    if let Some(path) = addr.strip_prefix("unix://") {
        return std::os::unix::net::UnixStream::connect(path).is_ok();
    }
    let mut hp = addr
        .trim_start_matches("tcp://")
        .replace("0.0.0.0", "127.0.0.1");
    if hp.starts_with(':') {
        // `tcp://:PORT` listens on every address.
        hp.insert_str(0, "127.0.0.1");
    }
    let Some(sa) = std::net::ToSocketAddrs::to_socket_addrs(&hp)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok()
}

/// The proxy's `-H` addresses from its arguments, defaulted like the proxy does.
fn listen_addrs(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = if a == "-H" || a == "--host" {
            it.next().cloned()
        } else if let Some(v) = a.strip_prefix("-H=").or_else(|| a.strip_prefix("--host=")) {
            Some(v.to_string())
        } else {
            a.strip_prefix("-H")
                .filter(|v| !v.is_empty() && !v.starts_with('-'))
                .map(str::to_string)
        };
        if let Some(v) = v {
            out.push(if v.contains("://") {
                v
            } else if v.starts_with('/') {
                format!("unix://{v}")
            } else {
                format!("tcp://{v}")
            });
        }
    }
    if out.is_empty() {
        out.push(weaveproxy::config::DEFAULT_LISTEN.to_string());
    }
    out
}

/// The proxy container's arguments: `Ok(None)` when it is not there at all.
async fn proxy_container_args(
    d: &Docker,
) -> Result<Option<(bool, Vec<String>)>, bollard::errors::Error> {
    match d.inspect_container(PROXY, None).await {
        Ok(c) => Ok(Some((
            c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            c.args.unwrap_or_default(),
        ))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn proxy_args(d: &Docker) -> anyhow::Result<Vec<String>> {
    match proxy_container_args(d).await? {
        Some((true, args)) => Ok(args),
        Some((false, _)) => {
            anyhow::bail!("weaveproxy container is not running. Have you launched it?")
        }
        None => anyhow::bail!("weaveproxy container is not present. Have you launched it?"),
    }
}

/// What a docker client needs to talk to the proxy's tcp listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientTls {
    Off,
    /// `--tls`: encrypted, no client certificate asked for.
    Encrypt,
    /// `--tlsverify`: the client presents its certificate and checks the proxy's.
    Verify,
}

fn client_tls(args: &[String], addr: &str) -> ClientTls {
    if !addr.starts_with("tcp://") {
        ClientTls::Off
    } else if flag_on(args, "--tlsverify") {
        ClientTls::Verify
    } else if flag_on(args, "--tls") {
        ClientTls::Encrypt
    } else {
        ClientTls::Off
    }
}

/// The first tcp listen address (else the first one), as a client reaches it, and the TLS the
/// client must use there.
async fn proxy_addr() -> anyhow::Result<(String, ClientTls)> {
    let d = docker()?;
    let args = proxy_args(&d).await?;
    let addrs = listen_addrs(&args);
    let addr = addrs
        .iter()
        .find(|a| a.starts_with("tcp://"))
        .or(addrs.first())
        .cloned()
        .unwrap_or_default();
    let tls = client_tls(&args, &addr);
    Ok((client_addr(&addr, Some(&daemon_host())), tls))
}

/// `0.0.0.0` means "every interface": a client uses its daemon's host, or else 127.0.0.1.
fn client_addr(addr: &str, docker_host: Option<&str>) -> String {
    let host = docker_host
        .and_then(|h| h.strip_prefix("tcp://"))
        .and_then(|hp| hp.rsplit_once(':').map(|(h, _)| h.to_string()))
        .unwrap_or_else(|| "127.0.0.1".into());
    match addr.strip_prefix("tcp://0.0.0.0:") {
        Some(port) => format!("tcp://{host}:{port}"),
        None => addr.to_string(),
    }
}

async fn stop(name: &str, not_running: &str) -> anyhow::Result<()> {
    let d = docker()?;
    let proxy_args = match name {
        PROXY => proxy_container_args(&d).await?.map(|(_, args)| args),
        _ => None,
    };
    match d
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(10),
                signal: None,
            }),
        )
        .await
    {
        // A stopped container is fine too (304): it is removed below, so the name is free.
        Ok(()) => {}
        // As Weave's script: said, and not a failure, so that scripts can stop unconditionally.
        Err(e) if not_found(&e) => {
            eprintln!("{not_running}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    d.remove_container(
        name,
        Some(RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await?;
    if let Some(args) = proxy_args {
        remove_unix_sockets(&args);
    }
    Ok(())
}

/// The bridge the network service owns (its `--bridge` default).
const BRIDGE: &str = "weave";

/// After `weave stop`, the bridge and its FORWARD rule go too when nothing uses them: no
/// interface on it, and neither weaveDNS (which may hold an address on it) nor the proxy
/// running. Whoever attaches next makes both again. Only for a daemon on this host, whose
/// bridge this host's is; a bridge that cannot be removed is said, and stop still succeeds.
async fn remove_idle_bridge() -> anyhow::Result<()> {
    if !daemon_host().starts_with("unix://") {
        return Ok(());
    }
    let ports = std::path::Path::new("/sys/class/net")
        .join(BRIDGE)
        .join("brif");
    let Ok(mut ports) = std::fs::read_dir(&ports) else {
        return Ok(());
    };
    let kept = |why: String| eprintln!("weave: bridge {BRIDGE} kept: {why}");
    if ports.next().is_some() {
        kept("containers are attached to it".into());
        return Ok(());
    }
    let d = docker()?;
    for name in [DNS, PROXY] {
        let running = match d.inspect_container(name, None).await {
            Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(e.into()),
        };
        if running {
            kept(format!("{name} is running"));
            return Ok(());
        }
    }
    let deleted = match weaveproxy::attach::Netlink::new() {
        Ok(netlink) => netlink.delete_link(BRIDGE).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match deleted {
        Ok(_) => {
            tokio::task::spawn_blocking(|| {
                weaveproxy::attach::firewall::remove_bridge_rule(BRIDGE)
            })
            .await?;
        }
        Err(e) => kept(format!("{e} (remove it with `ip link del {BRIDGE}`)")),
    }
    Ok(())
}

async fn status() -> anyhow::Result<()> {
    let router = weaveproxy::router_api::RouterClient::default();
    match router.status().await {
        Ok(s) => {
            say!("weave network service is running");
            for line in s.lines() {
                say!("        {line}");
            }
        }
        Err(_) => say!("weave network service is not running"),
    }
    let dns = weaveproxy::dns_api::DnsClient::new(weaveproxy::dns_api::DEFAULT_BASE_URL)
        .map_err(anyhow::Error::msg)?;
    match dns.status().await {
        Ok(s) => {
            say!("weaveDNS is running");
            for line in s.lines() {
                say!("        {line}");
            }
        }
        Err(_) => say!("weaveDNS is not running"),
    }
    let d = docker()?;
    match proxy_container_args(&d).await {
        Ok(Some((true, args))) => {
            say!("weave proxy is running");
            for a in listen_addrs(&args) {
                say!("        Address: {a}");
            }
        }
        Ok(_) => say!("weave proxy is not running"),
        // Not knowing is not "not running": the daemon's error, with its address, follows.
        Err(e) => {
            say!("weave proxy: unknown");
            return Err(e.into());
        }
    }
    Ok(())
}

/// Containers with `ethwe`: their MAC and addresses, read in their network namespaces.
async fn ps() -> anyhow::Result<()> {
    let d = docker()?;
    let list = d
        .list_containers(Some(ListContainersOptions {
            all: false,
            ..Default::default()
        }))
        .await?;
    for c in list {
        let Some(id) = c.id else { continue };
        let Ok(info) = d.inspect_container(&id, None).await else {
            continue;
        };
        let Some(pid) = info.state.and_then(|s| s.pid).filter(|p| *p > 0) else {
            continue;
        };
        if let Ok(Some((mac, addrs))) = weaveproxy::attach::inspect_iface(pid as u32).await {
            say!("{} {} {}", &id[..12.min(id.len())], mac, addrs.join(" "));
        }
    }
    Ok(())
}

async fn serve_network(opts: weaveproxy::network::Options, bridge: String) -> anyhow::Result<()> {
    let netlink = weaveproxy::attach::Netlink::new()?;
    netlink.ensure_bridge(&bridge).await?;
    let docker = Docker::connect_with_defaults().ok();
    weaveproxy::network::serve(opts, docker, shutdown()).await
}

async fn serve_dns(opts: weaveproxy::dns::Options) -> anyhow::Result<()> {
    // Only the weave address needs netlink; without one the service needs no privileges.
    let netlink = match opts.weave_cidr {
        Some(_) => Some(weaveproxy::attach::Netlink::new()?),
        None => None,
    };
    let docker = Docker::connect_with_defaults().ok();
    weaveproxy::dns::serve(opts, docker, netlink, shutdown()).await
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    if let (Ok(mut t), Ok(mut i)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn listen_addresses_from_flags() {
        assert_eq!(listen_addrs(&[]), s(&["tcp://0.0.0.0:12375"]));
        assert_eq!(
            listen_addrs(&s(&[
                "--with-ipam",
                "-H",
                "tcp://127.0.0.1:9999",
                "-H=unix:///x.sock",
                "-H/y.sock"
            ])),
            s(&["tcp://127.0.0.1:9999", "unix:///x.sock", "unix:///y.sock"])
        );
    }

    #[test]
    fn unix_listeners_mount_their_directories() {
        assert_eq!(
            unix_listener_dirs(&s(&["tcp://0.0.0.0:1", "unix:///run/weave/weave.sock"])).unwrap(),
            s(&["/run/weave"])
        );
        assert!(unix_listener_dirs(&s(&["unix:///x.sock"])).is_err());
        assert!(unix_listener_dirs(&s(&["unix://x.sock"])).is_err());
    }

    #[test]
    fn tls_files_become_read_only_mounts() {
        let dir = std::path::Path::new("/home/u/.docker");
        let (args, files) = tls_files(
            s(&[
                "--tlsverify",
                "--tlscacert=/tls/ca.pem",
                "--tlscert",
                "/h/server-cert.pem",
                "-H",
                "tcp://0.0.0.0:12375",
            ]),
            dir,
        )
        .unwrap();
        assert_eq!(
            args,
            s(&[
                "--tlsverify",
                "--tlscacert=/tls/ca.pem",
                "--tlscert=/tls/cert.pem",
                "-H",
                "tcp://0.0.0.0:12375",
                "--tlskey=/tls/key.pem"
            ])
        );
        let files: Vec<_> = files
            .iter()
            .map(|(f, h, i)| (*f, h.display().to_string(), *i))
            .collect();
        assert_eq!(
            files,
            vec![
                ("--tlscacert", "/tls/ca.pem".to_string(), "/tls/ca.pem"),
                (
                    "--tlscert",
                    "/h/server-cert.pem".to_string(),
                    "/tls/cert.pem"
                ),
                (
                    "--tlskey",
                    "/home/u/.docker/key.pem".to_string(),
                    "/tls/key.pem"
                ),
            ]
        );

        let (args, files) = tls_files(
            s(&[
                "-D",
                "tcp://h:2376",
                "--docker-tlsverify",
                "--docker-tlskey=/k.pem",
            ]),
            dir,
        )
        .unwrap();
        assert_eq!(
            args,
            s(&[
                "-D",
                "tcp://h:2376",
                "--docker-tlsverify",
                "--docker-tlskey=/tls/docker-key.pem",
                "--docker-tlscacert=/tls/docker-ca.pem",
                "--docker-tlscert=/tls/docker-cert.pem"
            ])
        );
        assert_eq!(files[1].1, dir.join("ca.pem"));

        let (args, files) = tls_files(s(&["--with-ipam"]), dir).unwrap();
        assert_eq!((args, files.len()), (s(&["--with-ipam"]), 0));
        let (_, files) = tls_files(s(&["--tls"]), dir).unwrap();
        assert_eq!(files.len(), 2, "--tls needs no CA");
        assert!(tls_files(s(&["--tlskey"]), dir).is_err());
    }

    #[test]
    fn boolean_flags_and_client_tls() {
        assert!(flag_on(&s(&["--tlsverify"]), "--tlsverify"));
        assert!(flag_on(&s(&["--tlsverify", "-H", "x"]), "--tlsverify"));
        assert!(!flag_on(&s(&["--tlsverify", "false"]), "--tlsverify"));
        assert!(!flag_on(
            &s(&["--tlsverify", "--tlsverify=false"]),
            "--tlsverify"
        ));
        assert!(flag_on(&s(&["--tlsverify=true"]), "--tlsverify"));
        assert!(!flag_on(&s(&["--tlsverifyx"]), "--tlsverify"));
        assert!(!flag_on(&s(&["--tls"]), "--tlsverify"));
        let tcp = "tcp://0.0.0.0:12375";
        assert_eq!(client_tls(&s(&["--tlsverify"]), tcp), ClientTls::Verify);
        assert_eq!(client_tls(&s(&["--tls"]), tcp), ClientTls::Encrypt);
        assert_eq!(client_tls(&s(&[]), tcp), ClientTls::Off);
        assert_eq!(
            client_tls(&s(&["--tlsverify"]), "unix:///x"),
            ClientTls::Off
        );
    }

    #[test]
    fn launch_dns_arguments() {
        let (args, http) = dns_args(s(&["10.2.4.1/24", "--upstream", "172.17.0.9"])).unwrap();
        assert_eq!(
            args,
            s(&[
                "serve-dns",
                "--weave-cidr",
                "10.2.4.1/24",
                "--upstream",
                "172.17.0.9"
            ])
        );
        assert_eq!(http, "127.0.0.1:6785");
        let (args, http) = dns_args(s(&["--http-addr=127.0.0.1:9"])).unwrap();
        assert_eq!(args, s(&["serve-dns", "--http-addr=127.0.0.1:9"]));
        assert_eq!(http, "127.0.0.1:9");
        assert!(dns_args(s(&["10.2.4.0/24"])).is_err());
        assert!(dns_args(s(&["bogus"])).is_err());
    }

    #[test]
    fn the_daemon_not_the_proxy_that_proxy_env_names() {
        let proxy = Some("tcp://127.0.0.1:12375");
        let local = "unix:///var/run/docker.sock";
        assert_eq!(daemon_host_from(None, true, proxy), local);
        assert_eq!(daemon_host_from(Some(""), true, proxy), local);
        assert_eq!(
            daemon_host_from(Some("tcp://h:2375"), true, proxy),
            "tcp://h:2375"
        );
        assert_eq!(
            daemon_host_from(Some("/run/d.sock"), true, None),
            "unix:///run/d.sock"
        );
        assert_eq!(
            daemon_host_from(None, false, Some("tcp://h:2375")),
            "tcp://h:2375"
        );
        assert_eq!(daemon_host_from(None, false, None), local);
    }

    #[test]
    fn client_address() {
        assert_eq!(
            client_addr("tcp://0.0.0.0:12375", None),
            "tcp://127.0.0.1:12375"
        );
        assert_eq!(
            client_addr("tcp://0.0.0.0:12375", Some("tcp://host1:2375")),
            "tcp://host1:12375"
        );
        assert_eq!(
            client_addr("tcp://0.0.0.0:12375", Some("unix:///var/run/docker.sock")),
            "tcp://127.0.0.1:12375"
        );
        assert_eq!(client_addr("tcp://10.0.0.1:1", None), "tcp://10.0.0.1:1");
        assert_eq!(client_addr("unix:///x.sock", None), "unix:///x.sock");
    }
}
