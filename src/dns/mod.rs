//! weaveDNS, the service `weave launch-dns` runs: containers' names in the weave domain
//! (`weave.local.` by default) answered from registrations, everything else relayed to the
//! host's resolvers.
//!
//! - [`records`]: the registrations and how a question is answered from them (pure);
//! - [`server`]: DNS over UDP and TCP;
//! - [`http`]: the registration API the proxy calls (`PUT /name/{id}/{ip}` ...);
//! - here: start-up, the weave address of the service, and the daemon's events (a container's
//!   records go when it dies or is destroyed; the proxy registers it again when it restarts).
//!
//! The service runs in the host's network namespace and listens on the docker bridge's IP,
//! which is the resolver address the proxy gives containers.

pub mod http;
pub mod records;
pub mod server;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use bollard::Docker;
use hickory_proto::rr::Name;
use tokio::net::{TcpListener, UdpSocket};

use crate::weave_cidr::Cidr;
use records::Records;
use server::Resolver;

pub const DEFAULT_DOMAIN: &str = "weave.local.";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:6785";
pub const DNS_PORT: u16 = 53;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The domain answered from registrations.
    #[arg(long, value_name = "DOMAIN", default_value = DEFAULT_DOMAIN)]
    pub domain: String,
    /// Where DNS is served, UDP and TCP (repeatable) [default: the docker bridge's IP, port 53,
    /// and the weave address if one is given]
    #[arg(long = "listen-address", value_name = "IP:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Upstream resolver for names outside the domain (repeatable) [default: the nameservers
    /// of /etc/resolv.conf]
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_upstream)]
    pub upstream: Vec<SocketAddr>,
    /// Where the HTTP API listens.
    #[arg(long = "http-addr", value_name = "ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// The service's own address on the weave network (put on the bridge; DNS served there too).
    #[arg(long = "weave-cidr", value_name = "ADDR/CIDR")]
    pub weave_cidr: Option<Cidr>,
    /// The weave bridge.
    #[arg(long, value_name = "NAME", default_value = "weave")]
    pub bridge: String,
}

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    s.parse().map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

/// The domain as the records key it; an error names the bad input.
pub fn parse_domain(s: &str) -> anyhow::Result<Name> {
    records::normalize(s).ok_or_else(|| anyhow::anyhow!("invalid DNS domain {s:?}"))
}

/// What the HTTP API and the event watcher share.
pub struct State {
    pub domain: Name,
    pub records: Arc<RwLock<Records>>,
    pub docker: Option<Docker>,
    pub listen: Vec<SocketAddr>,
    pub upstream: Vec<SocketAddr>,
}

/// The docker bridge's gateway address: what containers on the default network reach the host
/// at, and so where weaveDNS listens and what the proxy puts in their resolver configuration.
pub async fn docker_bridge_ip(docker: &Docker) -> anyhow::Result<Ipv4Addr> {
    let net = docker
        .inspect_network("bridge", None)
        .await
        .context("inspecting the docker network \"bridge\"")?;
    let configs: Vec<(Option<String>, Option<String>)> = net
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.gateway, c.subnet))
        .collect();
    gateway(&configs)
        .ok_or_else(|| anyhow::anyhow!("the docker network \"bridge\" has no IPv4 gateway"))
}

/// The first IPv4 gateway of the network's IPAM configs; a config without one (the daemon's
/// default when it picked the subnet itself) has the subnet's first host address, which is
/// what the daemon gives its bridge.
pub fn gateway(configs: &[(Option<String>, Option<String>)]) -> Option<Ipv4Addr> {
    configs.iter().find_map(|(gw, subnet)| {
        if let Some(ip) = gw.as_deref().and_then(|g| g.parse::<Ipv4Addr>().ok()) {
            return Some(ip);
        }
        let net: Cidr = subnet.as_deref()?.parse().ok()?;
        let first = u32::from(net.network().addr).checked_add(1)?;
        (net.prefix < 31).then(|| Ipv4Addr::from(first))
    })
}

/// Runs weaveDNS until `shutdown` resolves.
pub async fn serve(
    opts: Options,
    docker: Option<Docker>,
    netlink: Option<crate::attach::Netlink>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let domain = parse_domain(&opts.domain)?;
    // The weave address first: listening on it needs it to exist.
    if let Some(cidr) = opts.weave_cidr {
        let nl = netlink
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--weave-cidr needs netlink"))?;
        nl.ensure_bridge(&opts.bridge).await?;
        nl.add_link_address(&opts.bridge, cidr)
            .await
            .with_context(|| format!("adding {cidr} to bridge {}", opts.bridge))?;
        tracing::info!(%cidr, bridge = %opts.bridge, "weave address");
    }
    let result = run(&opts, domain, docker, shutdown).await;
    if let (Some(cidr), Some(nl)) = (opts.weave_cidr, &netlink) {
        match nl.del_link_address(&opts.bridge, cidr).await {
            Ok(_) => tracing::info!(%cidr, "weave address removed"),
            Err(e) => tracing::warn!(%cidr, "removing the weave address: {e}"),
        }
    }
    result
}

async fn run(
    opts: &Options,
    domain: Name,
    docker: Option<Docker>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut listen = opts.listen.clone();
    if listen.is_empty() {
        let d = docker.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no docker daemon to learn the bridge IP from; pass --listen-address")
        })?;
        listen.push(SocketAddr::new(docker_bridge_ip(d).await?.into(), DNS_PORT));
        if let Some(c) = opts.weave_cidr {
            listen.push(SocketAddr::new(c.addr.into(), DNS_PORT));
        }
    }
    let upstream = if opts.upstream.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        server::upstreams_from_resolv_conf(&text, &listen)
    } else {
        opts.upstream.clone()
    };
    let records = Arc::new(RwLock::new(Records::default()));
    let resolver = Arc::new(Resolver {
        domain: domain.clone(),
        records: records.clone(),
        upstream: upstream.clone(),
    });
    let mut tasks = Vec::new();
    for addr in &listen {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}/udp"))?;
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}/tcp"))?;
        tasks.push(tokio::spawn(server::serve_udp(
            Arc::new(udp),
            resolver.clone(),
        )));
        tasks.push(tokio::spawn(server::serve_tcp(tcp, resolver.clone())));
    }
    let http = TcpListener::bind(opts.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", opts.http_addr))?;
    let state = Arc::new(State {
        domain,
        records,
        docker: docker.clone(),
        listen: listen.clone(),
        upstream: upstream.clone(),
    });
    if let Some(d) = docker {
        tasks.push(tokio::spawn(watch_docker(d.clone(), state.clone())));
        tasks.push(tokio::spawn(recover(d, state.clone())));
    }
    tracing::info!(
        domain = %state.domain,
        listen = ?listen,
        upstream = ?upstream,
        http = %opts.http_addr,
        "weavedns listening"
    );
    http::run(http, state, shutdown).await;
    for t in tasks {
        t.abort();
    }
    tracing::info!("weavedns stopped");
    Ok(())
}

/// Records are kept in memory only: after a restart of weaveDNS, the running containers that
/// use it as their resolver (the proxy set that up) are registered again from what the daemon
/// and their `ethwe` say, as the proxy would.
async fn recover(docker: Docker, state: Arc<State>) {
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().build();
    let list = match docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("listing containers to recover their records: {e}");
            return;
        }
    };
    let ours: Vec<String> = state.listen.iter().map(|a| a.ip().to_string()).collect();
    let mut recovered = 0;
    for id in list.into_iter().filter_map(|c| c.id) {
        let Ok(info) = docker.inspect_container(&id, None).await else {
            continue;
        };
        let uses_us = info
            .host_config
            .as_ref()
            .and_then(|h| h.dns.as_ref())
            .is_some_and(|d| d.iter().any(|s| ours.contains(s)));
        let pid = info.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
        let config = info.config.unwrap_or_default();
        let fqdn = crate::intercept::start::fqdn(
            config.hostname.as_deref().unwrap_or(""),
            config.domainname.as_deref().unwrap_or(""),
        );
        let Some(name) = records::normalize(&fqdn) else {
            continue;
        };
        if !uses_us || pid <= 0 || !state.domain.zone_of(&name) || name == state.domain {
            continue;
        }
        let Ok(Some((_, addrs))) = crate::attach::inspect_iface(pid as u32).await else {
            continue;
        };
        let mut records = state.records.write().unwrap_or_else(|p| p.into_inner());
        for a in addrs {
            if let Some(ip) = a.split('/').next().and_then(|ip| ip.parse().ok())
                && records.add(&id, &name, ip)
            {
                recovered += 1;
            }
        }
    }
    if recovered > 0 {
        tracing::info!(recovered, "records of running containers recovered");
    }
}

/// What a container event means for its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// `destroy`: the records go.
    Destroyed,
    /// `die`: the records go unless it already runs again (a restart's `die` may arrive after
    /// the proxy registered the new start).
    Died,
}

pub fn classify(action: &str) -> Option<Gone> {
    match action {
        "destroy" => Some(Gone::Destroyed),
        "die" => Some(Gone::Died),
        _ => None,
    }
}

/// Follows `die` and `destroy` events forever.
async fn watch_docker(docker: Docker, state: Arc<State>) {
    let since = crate::events::now();
    crate::events::follow(&docker, since, &["die", "destroy"], |ev| {
        let docker = &docker;
        let state = &state;
        async move {
            let (Some(action), Some(id)) = (
                ev.action.as_deref(),
                ev.actor.as_ref().and_then(|a| a.id.as_deref()),
            ) else {
                return;
            };
            if let Some(gone) = classify(action) {
                container_gone(docker, state, id, gone).await;
            }
        }
    })
    .await
}

async fn container_gone(docker: &Docker, state: &State, id: &str, gone: Gone) {
    let has = state
        .records
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .containers()
        .iter()
        .any(|c| c == id);
    if !has {
        return;
    }
    if gone == Gone::Died && running(docker, id).await == Some(true) {
        return;
    }
    let n = state
        .records
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove_container(id);
    tracing::info!(container = %short(id), records = n, ?gone, "records removed");
}

/// `None` when the daemon cannot say (gone, or unreachable).
pub(crate) async fn running(docker: &Docker, id: &str) -> Option<bool> {
    let info = docker.inspect_container(id, None).await.ok()?;
    info.state.and_then(|s| s.running)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
    }

    #[test]
    fn options() {
        let o = Cli::parse_from(["x"]).opts;
        assert_eq!(o.domain, DEFAULT_DOMAIN);
        assert!(o.listen.is_empty() && o.upstream.is_empty());
        assert_eq!(o.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        let o = Cli::parse_from([
            "x",
            "--upstream",
            "172.17.0.5",
            "--upstream=127.0.0.1:5353",
            "--weave-cidr",
            "10.2.4.1/24",
            "--listen-address",
            "127.0.0.1:5300",
        ])
        .opts;
        assert_eq!(
            o.upstream,
            vec![
                "172.17.0.5:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:5353".parse().unwrap()
            ]
        );
        assert_eq!(
            o.weave_cidr.map(|c| c.to_string()).as_deref(),
            Some("10.2.4.1/24")
        );
        assert!(Cli::try_parse_from(["x", "--upstream", "nope"]).is_err());
        assert!(parse_domain("weave.local").is_ok());
        assert!(parse_domain("..").is_err());
    }

    #[test]
    fn gateways() {
        let c = |g: Option<&str>, s: Option<&str>| (g.map(String::from), s.map(String::from));
        assert_eq!(
            gateway(&[c(None, Some("172.17.0.0/16"))]),
            Some(Ipv4Addr::new(172, 17, 0, 1))
        );
        assert_eq!(
            gateway(&[
                c(Some("fd00::1"), Some("fd00::/64")),
                c(Some("10.1.0.254"), Some("10.1.0.0/24"))
            ]),
            Some(Ipv4Addr::new(10, 1, 0, 254))
        );
        assert_eq!(gateway(&[c(None, Some("fd00::/64"))]), None);
        assert_eq!(gateway(&[]), None);
    }

    #[test]
    fn events() {
        assert_eq!(classify("destroy"), Some(Gone::Destroyed));
        assert_eq!(classify("die"), Some(Gone::Died));
        assert_eq!(classify("start"), None);
    }
}
