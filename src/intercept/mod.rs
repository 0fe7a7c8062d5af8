//! The calls the proxy looks into: container create (wrap the command in weavewait, mount it)
//! and start/restart (attach to the weave network). Everything else is forwarded untouched.

pub mod create;
pub mod hosts;
pub mod start;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::attach::Netlink;
use crate::weave_cidr;

/// Where attached containers find weavewait, always at `/w/w` and read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeavewaitMount {
    /// A host path of the static binary, bound as the file `/w/w` (proxy as a host process).
    File(PathBuf),
    /// A named volume holding `w`, mounted at `/w` (proxy as a container: the volume is how a
    /// file inside the proxy's image becomes visible to other containers).
    Volume(String),
}

pub const WEAVEWAIT: &str = "/w/w";

impl WeavewaitMount {
    pub fn parse(setting: &str) -> Result<WeavewaitMount, String> {
        if let Some(name) = setting.strip_prefix("volume:") {
            if name.is_empty() || name.contains('/') || name.contains(':') {
                return Err(format!("weavewait volume name \"{name}\" is not valid"));
            }
            return Ok(WeavewaitMount::Volume(name.to_string()));
        }
        let path = if setting.is_empty() {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
            exe.with_file_name("weavewait")
        } else {
            PathBuf::from(setting)
        };
        if !path.is_absolute() {
            return Err(format!(
                "weavewait path {} must be absolute",
                path.display()
            ));
        }
        if !path.is_file() {
            return Err(format!(
                "weavewait binary not found at {} (build it with scripts/build-static, or pass --weavewait PATH)",
                path.display()
            ));
        }
        Ok(WeavewaitMount::File(path))
    }

    /// The `HostConfig.Binds` entry.
    pub fn bind(&self) -> String {
        match self {
            WeavewaitMount::File(p) => format!("{}:{WEAVEWAIT}:ro", p.display()),
            WeavewaitMount::Volume(v) => format!("{v}:/w:ro"),
        }
    }
}

/// Docker's network modes that give a container a network namespace of its own that we may
/// add an interface to. `host` and `container:…` share someone else's; a user-defined network
/// is the user's choice of network, so it is left alone.
pub fn attachable_network_mode(mode: &str) -> Result<(), String> {
    match mode {
        "" | "default" | "bridge" | "none" => Ok(()),
        "host" => Err("network mode host shares the host's network namespace".into()),
        m if m.starts_with("container:") => Err(format!(
            "network mode {m} shares another container's network namespace"
        )),
        m => Err(format!("it is on the user-defined network \"{m}\"")),
    }
}

/// Whether containers get weaveDNS as their resolver and are registered in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// While weaveDNS answers (the default).
    Auto,
    /// Always (`--with-dns`): even when weaveDNS does not answer at create.
    Always,
    /// Never (`--without-dns`): no resolver, no hostname, no registration.
    Never,
}

impl DnsMode {
    pub fn from_flags(with_dns: bool, without_dns: bool) -> DnsMode {
        match (with_dns, without_dns) {
            (_, true) => DnsMode::Never,
            (true, false) => DnsMode::Always,
            (false, false) => DnsMode::Auto,
        }
    }
}

pub struct Dns {
    pub mode: DnsMode,
    pub client: crate::dns_api::DnsClient,
    /// `None`: the docker bridge's gateway IP, asked from the daemon on first use.
    pub address: Option<std::net::Ipv4Addr>,
    learned: tokio::sync::OnceCell<std::net::Ipv4Addr>,
}

impl Dns {
    pub fn new(
        mode: DnsMode,
        client: crate::dns_api::DnsClient,
        address: Option<std::net::Ipv4Addr>,
    ) -> Dns {
        Dns {
            mode,
            client,
            address,
            learned: tokio::sync::OnceCell::new(),
        }
    }

    /// No resolver, no names, no registration.
    pub fn off() -> Dns {
        let client = crate::dns_api::DnsClient::new(crate::dns_api::DEFAULT_BASE_URL)
            .expect("the default weaveDNS URL is valid");
        Dns::new(DnsMode::Never, client, None)
    }

    /// The weave domain when DNS applies now, `None` when it is off.
    pub async fn domain(&self) -> Option<String> {
        match self.mode {
            DnsMode::Never => None,
            DnsMode::Auto => self.client.domain().await,
            DnsMode::Always => Some(
                self.client
                    .domain()
                    .await
                    .unwrap_or_else(|| crate::dns::DEFAULT_DOMAIN.to_string()),
            ),
        }
    }

    /// Where containers reach weaveDNS.
    pub async fn address(&self, docker: &DockerClient) -> Result<std::net::Ipv4Addr, String> {
        if let Some(a) = self.address {
            return Ok(a);
        }
        self.learned
            .get_or_try_init(|| async {
                let d = docker.get().await.map_err(|e| e.to_string())?;
                crate::dns::docker_bridge_ip(&d)
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await
            .copied()
    }
}

/// What the interceptors share.
pub struct Weave {
    pub docker: DockerClient,
    pub with_ipam: bool,
    pub weavewait: WeavewaitMount,
    pub bridge: String,
    pub netlink: Netlink,
    pub router: crate::router_api::RouterClient,
    pub dns: Dns,
    /// Write the weave addresses into containers' /etc/hosts.
    pub rewrite_hosts: bool,
    /// One attach at a time per container: the start interceptor and the event watcher both
    /// attach a container that the proxy starts.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Weave {
    pub fn new(
        docker: DockerClient,
        with_ipam: bool,
        weavewait: WeavewaitMount,
        bridge: String,
        netlink: Netlink,
        router: crate::router_api::RouterClient,
    ) -> Weave {
        Weave {
            docker,
            with_ipam,
            weavewait,
            bridge,
            netlink,
            router,
            dns: Dns::off(),
            rewrite_hosts: true,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_dns(mut self, dns: Dns) -> Weave {
        self.dns = dns;
        self
    }

    pub fn with_rewrite_hosts(mut self, on: bool) -> Weave {
        self.rewrite_hosts = on;
        self
    }

    pub(crate) async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds, so the map stays as small as the work in flight.
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            locks.entry(id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// `Ok(Ok(tokens))`: attach; `Ok(Err(reason))`: hands off, and why.
pub fn decide(
    with_ipam: bool,
    env: &[&str],
    network_mode: &str,
) -> Result<Result<Vec<weave_cidr::Token>, String>, weave_cidr::WeaveCidrError> {
    let tokens = match weave_cidr::from_env(env.iter().copied()) {
        Some(value) => match weave_cidr::parse(value)? {
            weave_cidr::Request::None => return Ok(Err("it has WEAVE_CIDR=none".into())),
            weave_cidr::Request::Attach(tokens) => tokens,
        },
        None if with_ipam => vec![weave_cidr::Token::NetDefault],
        None => {
            return Ok(Err(
                "it has no WEAVE_CIDR and the proxy runs without --with-ipam".into(),
            ));
        }
    };
    Ok(attachable_network_mode(network_mode).map(|()| tokens))
}

/// The proxy's own client of the daemon, made on first use: the daemon may start after the
/// proxy. Its API version is negotiated, so that the proxy works with old and new engines.
pub struct DockerClient {
    addr: crate::proxy::upstream::DockerAddr,
    client: tokio::sync::OnceCell<bollard::Docker>,
}

impl DockerClient {
    pub fn new(addr: crate::proxy::upstream::DockerAddr) -> DockerClient {
        DockerClient {
            addr,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> Result<bollard::Docker, bollard::errors::Error> {
        use crate::proxy::upstream::DockerAddr;
        self.client
            .get_or_try_init(|| async {
                let client = match &self.addr {
                    DockerAddr::Unix(p) => bollard::Docker::connect_with_unix(
                        &p.to_string_lossy(),
                        120,
                        bollard::API_DEFAULT_VERSION,
                    )?,
                    DockerAddr::Tcp(hp) => bollard::Docker::connect_with_http(
                        &format!("http://{hp}"),
                        120,
                        bollard::API_DEFAULT_VERSION,
                    )?,
                };
                client.negotiate_version().await
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weave_cidr::Token;

    #[test]
    fn decisions() {
        let claim = Token::Claim("10.2.1.1/24".parse().unwrap());
        assert_eq!(
            decide(false, &["WEAVE_CIDR=10.2.1.1/24"], ""),
            Ok(Ok(vec![claim]))
        );
        assert_eq!(
            decide(false, &["WEAVE_CIDR="], "default"),
            Ok(Ok(vec![Token::NetDefault]))
        );
        assert_eq!(
            decide(false, &["WEAVE_CIDR="], "none"),
            Ok(Ok(vec![Token::NetDefault]))
        );
        assert_eq!(decide(true, &[], "bridge"), Ok(Ok(vec![Token::NetDefault])));
        assert!(decide(false, &[], "").unwrap().is_err());
        assert!(decide(true, &["WEAVE_CIDR=none"], "").unwrap().is_err());
        assert!(decide(true, &[], "host").unwrap().is_err());
        assert!(decide(true, &[], "container:abc").unwrap().is_err());
        assert!(decide(true, &[], "mynet").unwrap().is_err());
        assert!(decide(false, &["WEAVE_CIDR=bogus"], "").is_err());
    }

    #[test]
    fn dns_modes() {
        assert_eq!(DnsMode::from_flags(false, false), DnsMode::Auto);
        assert_eq!(DnsMode::from_flags(true, false), DnsMode::Always);
        assert_eq!(DnsMode::from_flags(false, true), DnsMode::Never);
    }

    #[test]
    fn weavewait_mounts() {
        assert_eq!(
            WeavewaitMount::parse("volume:ww").unwrap().bind(),
            "ww:/w:ro"
        );
        assert!(WeavewaitMount::parse("volume:").is_err());
        assert!(WeavewaitMount::parse("relative/path").is_err());
        assert!(WeavewaitMount::parse("/nonexistent/weavewait").is_err());
        let f = tempfile::NamedTempFile::new().unwrap();
        let m = WeavewaitMount::parse(f.path().to_str().unwrap()).unwrap();
        assert_eq!(m.bind(), format!("{}:/w/w:ro", f.path().display()));
    }
}
