//! The calls the proxy looks into: container create (wrap the command in weavewait, mount it)
//! and start/restart (attach to the weave network). Everything else is forwarded untouched.

pub mod create;
pub mod hosts;
pub mod start;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::attach::Netlink;
use crate::weave_cidr;

/// Reads a request body the proxy rewrites, which it must hold whole: up to `limit` bytes.
/// Over it is Docker's 413 with the limit named, not a bare "length limit exceeded".
pub async fn read_body(
    body: crate::proxy::body::Body,
    limit: usize,
    what: &str,
) -> Result<bytes::Bytes, crate::proxy::body::ApiError> {
    use crate::proxy::body::ApiError;
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            hyper::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "weaveproxy: the {what} request's body is over {} MiB, more than the proxy reads of one (it is a small JSON document)",
                limit / (1024 * 1024)
            ),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "weaveproxy: reading the {what} request: {e}"
        ))),
    }
}

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

/// The mount that tells weavewait not to wait: the container turned out (only at start, from a
/// legacy start body) to share the host's or another container's network namespace. Any file
/// will do; every daemon's host has this one. It sits outside `/w`, which may be a read-only
/// volume; mounts from create survive such a start.
pub const NOOP_BIND: &str = "/dev/null:/w-noop:ro";

/// Puts `binds` into a HostConfig object in place of any mount of weavewait's it already has
/// (never stacked), creating `Binds` as needed; every other bind is kept.
pub fn set_weavewait_binds(host_config: &mut serde_json::Map<String, Value>, binds: &[String]) {
    let list = host_config
        .entry("Binds")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(list) = list {
        list.retain(|b| {
            let target = b.as_str().and_then(|s| s.split(':').nth(1)).unwrap_or("");
            target != "/w" && !target.starts_with("/w/") && target != "/w-noop"
        });
        list.extend(binds.iter().map(|b| Value::String(b.clone())));
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
    upstream: crate::proxy::upstream::Upstream,
    client: tokio::sync::OnceCell<bollard::Docker>,
}

impl DockerClient {
    pub fn new(upstream: crate::proxy::upstream::Upstream) -> DockerClient {
        DockerClient {
            upstream,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> Result<bollard::Docker, bollard::errors::Error> {
        use crate::proxy::upstream::DockerAddr;
        self.client
            .get_or_try_init(|| async {
                let client = match &self.upstream.addr {
                    DockerAddr::Unix(p) => bollard::Docker::connect_with_unix(
                        &p.to_string_lossy(),
                        120,
                        bollard::API_DEFAULT_VERSION,
                    )?,
                    DockerAddr::Tcp(hp) if self.upstream.is_tls() => {
                        // The proxy's own TLS connection, so that the daemon is reached one
                        // way (and bollard needs no TLS stack of its own).
                        bollard::Docker::connect_with_custom_transport(
                            tls_transport(self.upstream.clone(), hp.clone()),
                            Some(format!("https://{hp}")),
                            120,
                            bollard::API_DEFAULT_VERSION,
                        )?
                    }
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

type TransportFuture = futures_util::future::BoxFuture<
    'static,
    Result<hyper::Response<hyper::body::Incoming>, bollard::errors::Error>,
>;

/// bollard hands a custom transport absolute URIs; on our own connection the request goes in
/// origin form with the daemon's address as `Host`, as an HTTP client would send it.
fn tls_transport(
    upstream: crate::proxy::upstream::Upstream,
    hostport: String,
) -> impl Fn(bollard::BollardRequest) -> TransportFuture + Send + Sync {
    move |mut req: bollard::BollardRequest| {
        let upstream = upstream.clone();
        let hostport = hostport.clone();
        Box::pin(async move {
            let origin = req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .parse::<hyper::Uri>()
                .map_err(|e| bollard::errors::Error::IOError {
                    err: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })?;
            *req.uri_mut() = origin;
            if let Ok(host) = hyper::header::HeaderValue::from_str(&hostport) {
                req.headers_mut().insert(hyper::header::HOST, host);
            }
            upstream
                .send(req)
                .await
                .map_err(|e| bollard::errors::Error::IOError {
                    err: std::io::Error::other(e.message),
                })
        })
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
