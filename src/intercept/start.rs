//! What happens when a container starts: `POST [/vX.Y]/containers/{id}/start` (and `restart`)
//! is forwarded (a legacy start body that replaces the HostConfig gets weavewait's mount back);
//! once the daemon has started the container, and before the client hears so, the container is
//! attached to the weave network:
//!
//! 1. inspect it; only containers the proxy prepared at create (entrypoint `/w/w`) that are
//!    still attachable (WEAVE_CIDR, network mode) and running are touched;
//! 2. its addresses: `WEAVE_CIDR` addresses are claimed, `net:` and blank ones allocated, from
//!    the weave router's IPAM (ours or Weave Net's);
//! 3. its `/etc/hosts`: its names at its weave addresses (unless `--no-rewrite-hosts`);
//! 4. netlink: veth pair, host end on the bridge, `ethwe` inside with the addresses, up —
//!    which releases weavewait, which execs the application;
//! 5. weaveDNS: each address registered under the container's name when that is in the weave
//!    domain (while weaveDNS runs, or always with `--with-dns`; never with `--without-dns`).
//!
//! If that fails the container is killed (its application never ran: weavewait was still
//! waiting) and the client gets the reason. The same attach runs for starts the proxy does not
//! see (restart policies, `docker restart` elsewhere, a daemon restart), from the event stream.

use bollard::models::ContainerInspectResponse;
use hyper::{Request, Response, StatusCode, header};
use serde_json::Value;

use super::{WEAVEWAIT, Weave};
use crate::attach::Attached;
use crate::proxy::body::{self, ApiError, Body};
use crate::proxy::forward::{HijackSlot, forward};
use crate::proxy::lane::Lane;
use crate::proxy::route;
use crate::proxy::upstream::Upstream;
use crate::router_api::RouterError;
use crate::weave_cidr::{Cidr, Token};

pub async fn handle(
    weave: &Weave,
    upstream: &Upstream,
    lane: &Lane,
    req: Request<Body>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let req = legacy_host_config(weave, req, id).await?;
    let resp = forward(upstream, lane, req, &HijackSlot::default()).await?;
    // 304 (already started), 404, 409...: nothing was started.
    if !resp.status().is_success() {
        return Ok(resp);
    }
    match attach_container(weave, id).await {
        Ok(outcome) => {
            tracing::debug!(container = id, ?outcome, "start");
            Ok(resp)
        }
        Err(e) => {
            tracing::error!(container = id, "attach failed, killing the container: {e}");
            let killed = match weave.docker.get().await {
                Ok(docker) => docker.kill_container(id, None).await,
                Err(e) => Err(e),
            };
            if let Err(kill) = killed {
                tracing::warn!(container = id, "kill after failed attach: {kill}");
            }
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("weaveproxy: cannot attach container {id} to the weave network: {e}"),
            ))
        }
    }
}

/// API versions before 1.24 let a start carry a HostConfig, bare or as `{"HostConfig": ...}`,
/// that replaces the create-time one, and with it weavewait's mount (W-03). For a container
/// this proxy prepared, the mount goes back in: the waiting weavewait when the network mode is
/// one we attach, the one that does not wait when the container turned out to share another
/// namespace. Every other field is the client's.
async fn legacy_host_config(
    weave: &Weave,
    req: Request<Body>,
    id: &str,
) -> Result<Request<Body>, ApiError> {
    if !daemon_takes_start_body(req.uri().path(), req.headers()) {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let bytes = super::read_body(body, MAX_BODY, "start").await?;
    // Not a JSON object: the daemon's own error is the right answer.
    let Ok(Value::Object(mut start)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Request::from_parts(parts, body::full(bytes)));
    };
    let docker = weave.docker.get().await.map_err(docker_error)?;
    let info = match docker.inspect_container(id, None).await {
        Ok(info) => info,
        // The daemon answers an unknown container itself.
        Err(_) => return Ok(Request::from_parts(parts, body::full(bytes))),
    };
    if !prepared_by(weave, &info) {
        return Ok(Request::from_parts(parts, body::full(bytes)));
    }
    // The daemon reads the nested form when there is one.
    let host_config = match start.get_mut("HostConfig") {
        Some(Value::Object(nested)) => nested,
        _ => &mut start,
    };
    let mode = host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or("");
    let binds = match super::attachable_network_mode(mode) {
        Ok(()) => {
            reapply_dns(weave, host_config, info.host_config.as_ref()).await;
            vec![weave.weavewait.bind()]
        }
        Err(why) => {
            tracing::info!(container = id, "not attaching at start: {why}");
            vec![weave.weavewait.bind(), super::NOOP_BIND.to_string()]
        }
    };
    super::set_weavewait_binds(host_config, &binds);
    let rewritten = serde_json::to_vec(&start)
        .map_err(|e| ApiError::internal(format!("weaveproxy: encoding the start request: {e}")))?;
    // A stale length would make hyper truncate or abort the body.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(Request::from_parts(parts, body::full(rewritten)))
}

/// The resolver settings of create (weaveDNS's, or the user's) go back into a start HostConfig
/// that has none, while the proxy points containers at weaveDNS.
async fn reapply_dns(
    weave: &Weave,
    start: &mut serde_json::Map<String, Value>,
    created: Option<&bollard::models::HostConfig>,
) {
    if weave.dns.domain().await.is_none() {
        return;
    }
    let unset = |v: Option<&Value>| {
        v.is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
    };
    for (key, value) in [
        ("Dns", created.and_then(|h| h.dns.clone())),
        ("DnsSearch", created.and_then(|h| h.dns_search.clone())),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty())
            && unset(start.get(key))
        {
            start.insert(key.into(), Value::from(value));
        }
    }
}

/// Start bodies are small JSON documents; anything near this is not one.
const MAX_BODY: usize = 1024 * 1024;

/// Whether the daemon will read this start request's body as a HostConfig: only API versions
/// before 1.24 do (later ones refuse it), and only bodies of more than 7 bytes (`{}` and `null`
/// are ignored).
fn daemon_takes_start_body(path: &str, headers: &hyper::HeaderMap) -> bool {
    if !path.ends_with("/start") || route::api_version(path).is_none_or(|v| v >= (1, 24)) {
        return false;
    }
    match headers.get(header::CONTENT_LENGTH) {
        Some(len) => len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > 7),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn docker_error(e: bollard::errors::Error) -> ApiError {
    ApiError::internal(format!("weaveproxy: docker daemon: {e}"))
}

/// Prepared at create by this proxy: weavewait in front, and this proxy's weavewait mounted
/// (other proxies on the same daemon, or none, may have made it).
fn prepared_by(weave: &Weave, info: &ContainerInspectResponse) -> bool {
    let wrapped = info
        .config
        .as_ref()
        .and_then(|c| c.entrypoint.as_ref())
        .and_then(|e| e.first())
        .is_some_and(|e| e == WEAVEWAIT);
    let ours = info
        .host_config
        .as_ref()
        .and_then(|h| h.binds.as_ref())
        .is_some_and(|b| b.contains(&weave.weavewait.bind()));
    // weavewait told not to wait (a committed image run without WEAVE_CIDR): hands off.
    let no_wait = info
        .host_config
        .as_ref()
        .and_then(|h| h.binds.as_ref())
        .is_some_and(|b| b.iter().any(|x| x == super::NOOP_BIND));
    wrapped && ours && !no_wait
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Attached {
        cidrs: Vec<Cidr>,
        how: Attached,
    },
    /// Not prepared by the proxy, or hands off (WEAVE_CIDR=none, host network...).
    NotOurs,
    /// Exited (or gone) before it could be attached: not an error.
    NotRunning,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("{0}")]
    Router(#[from] RouterError),
    #[error("{0}")]
    Attach(#[from] crate::attach::AttachError),
    #[error("{0}")]
    Cidr(#[from] crate::weave_cidr::WeaveCidrError),
    #[error("{token}: {err}")]
    Address { token: Token, err: RouterError },
}

impl StartError {
    /// Trying again cannot help: the router refused the request itself (an address taken, a
    /// subnet full), or the container's own settings are wrong. Anything else (the router or
    /// the daemon not answering, netlink) may pass.
    pub fn is_permanent(&self) -> bool {
        let refused = |e: &RouterError| {
            matches!(e, RouterError::Api { status, .. } if status.is_client_error())
                || matches!(e, RouterError::BadId(_) | RouterError::BadUrl(_))
        };
        match self {
            StartError::Cidr(_) => true,
            StartError::Router(e) | StartError::Address { err: e, .. } => refused(e),
            StartError::Docker(_) | StartError::Attach(_) => false,
        }
    }
}

pub async fn attach_container(weave: &Weave, id: &str) -> Result<Outcome, StartError> {
    // What the attach step costs a start (waiting for a concurrent attach included); the
    // benchmark reads it from the log.
    let started = std::time::Instant::now();
    let docker = weave.docker.get().await?;
    let inspect = |id: String| {
        let docker = docker.clone();
        async move {
            match docker.inspect_container(&id, None).await {
                Ok(i) => Ok(Some(i)),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    // The lock is per full id: the client may name the container, the event stream does not.
    let full_id = if is_full_id(id) {
        id.to_string()
    } else {
        match inspect(id.to_string()).await?.and_then(|i| i.id) {
            Some(full) => full,
            None => return Ok(Outcome::NotRunning),
        }
    };
    let _one_at_a_time = weave.lock(&full_id).await;
    let Some(info) = inspect(full_id.clone()).await? else {
        return Ok(Outcome::NotRunning);
    };
    if !prepared_by(weave, &info) {
        return Ok(Outcome::NotOurs);
    }
    let config = info.config.unwrap_or_default();
    let env = config.env.unwrap_or_default();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let mode = info
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let Ok(tokens) = super::decide(weave.with_ipam, &env, &mode)? else {
        return Ok(Outcome::NotOurs);
    };
    let state = info.state.unwrap_or_default();
    let pid = state.pid.unwrap_or(0);
    if !state.running.unwrap_or(false) || pid <= 0 {
        return Ok(Outcome::NotRunning);
    }
    let pid = pid as u32;
    let fqdn = fqdn(
        config.hostname.as_deref().unwrap_or(""),
        config.domainname.as_deref().unwrap_or(""),
    );

    // The interface is made while the addresses are claimed or allocated: both take
    // milliseconds, and neither needs the other until the addresses go on.
    let (cidrs, prepared) = tokio::join!(
        addresses(weave, &full_id, &tokens),
        weave.netlink.prepare(pid, &weave.bridge)
    );
    let attached = match (cidrs, prepared) {
        (Ok(cidrs), Ok(prepared)) => {
            // Before `ethwe` goes up, which lets the application start.
            if weave.rewrite_hosts {
                let mounts = info.mounts.as_deref().unwrap_or_default();
                rewrite_hosts(
                    mounts,
                    info.host_config.as_ref(),
                    pid,
                    &full_id,
                    &fqdn,
                    &cidrs,
                )
                .await;
            }
            weave
                .netlink
                .finish(pid, prepared, &cidrs)
                .await
                .map(|how| (cidrs, how))
        }
        (Err(e), Ok(prepared)) => {
            weave.netlink.abandon(prepared).await;
            return Err(e);
        }
        (_, Err(e)) => Err(e),
    };
    match attached {
        Ok((cidrs, how)) => {
            let ms = started.elapsed().as_micros() as f64 / 1000.0;
            let addresses: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
            // The start request and the event watcher both reach every start; the second finds
            // the work done, which is only worth a line when debugging.
            let again = how == Attached::Existing { added: 0 };
            if again {
                tracing::debug!(container = %short(&full_id), ?addresses, ?how, ms, "attached");
            } else {
                tracing::info!(container = %short(&full_id), ?addresses, ?how, ms, "attached");
            }
            register(weave, &full_id, &fqdn, &cidrs, again).await;
            Ok(Outcome::Attached { cidrs, how })
        }
        Err(e) => {
            // It may have exited while we worked (a short command, or the event watcher got
            // there first and the application already finished): its namespace went with it.
            if !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists() {
                return Ok(Outcome::NotRunning);
            }
            match docker.inspect_container(&full_id, None).await {
                Ok(i)
                    if i.state.as_ref().and_then(|s| s.pid) == Some(i64::from(pid))
                        && i.state.as_ref().and_then(|s| s.running).unwrap_or(false) =>
                {
                    Err(e.into())
                }
                _ => Ok(Outcome::NotRunning),
            }
        }
    }
}

/// Points the container's /etc/hosts at its weave name and addresses, unless it mounts a file
/// of its own there. A failure is logged: the container works, its hosts file is Docker's.
async fn rewrite_hosts(
    mounts: &[bollard::models::MountPoint],
    host_config: Option<&bollard::models::HostConfig>,
    pid: u32,
    id: &str,
    fqdn: &str,
    cidrs: &[Cidr],
) {
    let own_hosts_file = mounts
        .iter()
        .any(|m| m.destination.as_deref() == Some("/etc/hosts"));
    if own_hosts_file {
        tracing::info!(container = %short(id), "not rewriting /etc/hosts: the container mounts its own");
        return;
    }
    let extra = host_config
        .and_then(|h| h.extra_hosts.clone())
        .unwrap_or_default();
    let text = super::hosts::contents(fqdn, cidrs, &extra);
    if let Err(e) = super::hosts::write(pid, &text).await {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tracing::error!(container = %short(id), "cannot rewrite /etc/hosts: {e}");
        } else {
            // A short command that has already finished: nothing is lost.
            tracing::debug!(container = %short(id), "exited before /etc/hosts was rewritten: {e}");
        }
    }
}

/// The container's full name as Docker has it: `Hostname` (which modern clients send whole,
/// `-h a.b.c`), plus `Domainname` when set (the proxy's own derivation, older clients).
pub fn fqdn(hostname: &str, domainname: &str) -> String {
    let d = domainname.trim_matches('.');
    if d.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{d}")
    }
}

/// Registers the container's addresses in weaveDNS when its name is in the weave domain. A
/// failure is logged, not fatal: the container works, it is just not found by name.
/// `again`: the other path (start request or event watcher) has registered it already.
async fn register(weave: &Weave, id: &str, fqdn: &str, cidrs: &[Cidr], again: bool) {
    let Some(domain) = weave.dns.domain().await else {
        return;
    };
    if !crate::dns_api::in_domain(fqdn, &domain) {
        tracing::debug!(container = %short(id), fqdn, %domain, "not registered in weaveDNS: outside the domain");
        return;
    }
    for c in cidrs {
        match weave.dns.client.register(id, c.addr, fqdn).await {
            Ok(()) if again => {
                tracing::debug!(container = %short(id), fqdn, ip = %c.addr, "registered in weaveDNS")
            }
            Ok(()) => {
                tracing::info!(container = %short(id), fqdn, ip = %c.addr, "registered in weaveDNS")
            }
            // --with-dns while weaveDNS is down: expected, and said once per start.
            Err(e @ crate::dns_api::DnsError::NotRunning) => {
                tracing::warn!(container = %short(id), fqdn, "not registered: {e}");
                return;
            }
            Err(e) => {
                tracing::error!(container = %short(id), fqdn, ip = %c.addr, "weaveDNS registration: {e}")
            }
        }
    }
}

fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The container's addresses from its tokens. An explicit address is claimed when a router
/// answers (so that two containers cannot hold it) and used as it is when none runs: it needs
/// no allocator. Allocation needs the router.
async fn addresses(weave: &Weave, id: &str, tokens: &[Token]) -> Result<Vec<Cidr>, StartError> {
    let mut out = Vec::with_capacity(tokens.len());
    for &token in tokens {
        let cidr = match token {
            Token::Claim(c) => match weave.router.claim(id, c).await {
                Ok(()) | Err(RouterError::NotRunning) => c,
                Err(err) => return Err(StartError::Address { token, err }),
            },
            Token::Net(subnet) => weave
                .router
                .allocate(id, Some(subnet))
                .await
                .map_err(|err| StartError::Address { token, err })?,
            Token::NetDefault => weave
                .router
                .allocate(id, None)
                .await
                .map_err(|err| StartError::Address { token, err })?,
        };
        out.push(cidr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fqdn;

    #[test]
    fn names() {
        assert_eq!(fqdn("pingme.weave.local", ""), "pingme.weave.local");
        assert_eq!(fqdn("seeone", "weave.local"), "seeone.weave.local");
        assert_eq!(fqdn("a", "b.c."), "a.b.c");
        assert_eq!(fqdn("0123456789ab", ""), "0123456789ab");
    }

    #[test]
    fn refusals_are_not_retried() {
        use super::{RouterError, StartError, Token};
        let api = |code: u16| RouterError::Api {
            status: hyper::StatusCode::from_u16(code).unwrap(),
            message: "x".into(),
        };
        let token = Token::NetDefault;
        assert!(StartError::Router(api(409)).is_permanent());
        assert!(
            StartError::Address {
                token,
                err: api(400)
            }
            .is_permanent()
        );
        assert!(!StartError::Router(api(503)).is_permanent());
        assert!(!StartError::Router(RouterError::NotRunning).is_permanent());
        assert!(
            !StartError::Address {
                token,
                err: RouterError::Http("reset".into())
            }
            .is_permanent()
        );
    }
}
