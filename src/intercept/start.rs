//! What happens when a container starts: `POST [/vX.Y]/containers/{id}/start` (and `restart`)
//! is forwarded; once the daemon has started the container, and before the client hears so,
//! the container is attached to the weave network:
//!
//! 1. inspect it; only containers the proxy prepared at create (entrypoint `/w/w`) that are
//!    still attachable (WEAVE_CIDR, network mode) and running are touched;
//! 2. its addresses: `WEAVE_CIDR` addresses are claimed, `net:` and blank ones allocated, from
//!    the weave router's IPAM (ours or Weave Net's);
//! 3. netlink: veth pair, host end on the bridge, `ethwe` inside with the addresses, up —
//!    which releases weavewait, which execs the application.
//!
//! If that fails the container is killed (its application never ran: weavewait was still
//! waiting) and the client gets the reason. The same attach runs for starts the proxy does not
//! see (restart policies, `docker restart` elsewhere, a daemon restart), from the event stream.

use hyper::{Request, Response, StatusCode};

use super::{WEAVEWAIT, Weave};
use crate::attach::Attached;
use crate::proxy::body::{ApiError, Body};
use crate::proxy::forward::{HijackSlot, forward};
use crate::proxy::lane::Lane;
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
    let config = info.config.unwrap_or_default();
    let prepared = config
        .entrypoint
        .as_ref()
        .and_then(|e| e.first())
        .is_some_and(|e| e == WEAVEWAIT);
    // Prepared by this proxy: other proxies on the same daemon (or none) may have made it.
    let ours = info
        .host_config
        .as_ref()
        .and_then(|h| h.binds.as_ref())
        .is_some_and(|b| b.contains(&weave.weavewait.bind()));
    if !prepared || !ours {
        return Ok(Outcome::NotOurs);
    }
    let env = config.env.unwrap_or_default();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let mode = info
        .host_config
        .and_then(|h| h.network_mode)
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

    // The interface is made while the addresses are claimed or allocated: both take
    // milliseconds, and neither needs the other until the addresses go on.
    let (cidrs, prepared) = tokio::join!(
        addresses(weave, &full_id, &tokens),
        weave.netlink.prepare(pid, &weave.bridge)
    );
    let attached = match (cidrs, prepared) {
        (Ok(cidrs), Ok(prepared)) => weave
            .netlink
            .finish(pid, prepared, &cidrs)
            .await
            .map(|how| (cidrs, how)),
        (Err(e), Ok(prepared)) => {
            weave.netlink.abandon(prepared).await;
            return Err(e);
        }
        (_, Err(e)) => Err(e),
    };
    match attached {
        Ok((cidrs, how)) => {
            let ms = started.elapsed().as_micros() as f64 / 1000.0;
            tracing::info!(container = %short(&full_id), addresses = ?cidrs.iter().map(Cidr::to_string).collect::<Vec<_>>(), ?how, ms, "attached");
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
