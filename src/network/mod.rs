//! The single-host IP address management service that `weave launch` runs.
//!
//! It speaks the IPAM subset of the Weave Net router's HTTP API (see [`http`]), keeps its state in
//! a data directory (see [`store`]) and, given a Docker client, frees the addresses of containers
//! that are destroyed.

pub mod alloc;
pub mod http;
pub mod store;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::ListContainersOptionsBuilder;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::weave_cidr::Cidr;
use alloc::{Allocator, DEFAULT_RANGE};
use http::{Service, Shared};
use store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Addresses are allocated from this range.
    #[arg(long = "ipalloc-range", value_name = "CIDR", default_value_t = DEFAULT_RANGE)]
    pub ipalloc_range: Cidr,
    /// Subnet used when a container asks for none in particular (default: the whole range).
    #[arg(long = "ipalloc-default-subnet", value_name = "CIDR")]
    pub ipalloc_default_subnet: Option<Cidr>,
    /// Where the HTTP API listens.
    #[arg(
        long = "http-addr",
        value_name = "ADDR",
        default_value = "127.0.0.1:6784"
    )]
    pub http_addr: SocketAddr,
    /// Directory holding the allocation state.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "/weavedb")]
    pub data_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ipalloc_range: DEFAULT_RANGE,
            ipalloc_default_subnet: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 6784)),
            data_dir: PathBuf::from("/weavedb"),
        }
    }
}

/// Container ids as the API accepts them: Docker ids and names, and Weave's own idents such as
/// `weave:expose`. Anything that could confuse a URL path or a log line is refused.
pub fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Binds `opts.http_addr` and runs the service until `shutdown` resolves.
pub async fn serve(
    opts: Options,
    docker: Option<Docker>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(opts.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", opts.http_addr))?;
    serve_on(listener, opts, docker, shutdown).await
}

/// Like [`serve`], on a listener the caller has already bound (`opts.http_addr` is ignored).
pub async fn serve_on(
    listener: TcpListener,
    opts: Options,
    docker: Option<Docker>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let default_subnet = opts.ipalloc_default_subnet.unwrap_or(opts.ipalloc_range);
    let mut alloc = Allocator::new(opts.ipalloc_range, default_subnet)
        .context("invalid --ipalloc-range / --ipalloc-default-subnet")?;
    let store = Store::open(&opts.data_dir)?;
    let restored = store.load_into(&mut alloc)?;
    let shared: Shared = Arc::new(Mutex::new(Service::new(alloc, store)));

    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        range = %opts.ipalloc_range,
        %default_subnet,
        restored,
        "ipam listening"
    );

    let watcher = docker.map(|d| tokio::spawn(watch_docker(d, shared.clone())));
    http::run(listener, shared, shutdown).await;
    if let Some(w) = watcher {
        w.abort();
    }
    tracing::info!("ipam stopped");
    Ok(())
}

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The id of the container a `destroy` event is about.
fn destroyed_container(ev: &EventMessage) -> Option<&str> {
    if ev.action.as_deref() != Some("destroy") {
        return None;
    }
    ev.actor.as_ref()?.id.as_deref()
}

/// Frees the addresses of containers that no longer exist, forever: once at start (for deaths
/// while we were down), then on every `destroy` event. Reconnects with backoff if Docker goes away.
async fn watch_docker(docker: Docker, shared: Shared) {
    let mut backoff = BACKOFF_START;
    // Events are asked for from this time on, so none is lost between the initial listing and
    // the subscription; replays are harmless because release is idempotent.
    let since = crate::events::now();
    while let Err(e) = reclaim_dead(&docker, &shared).await {
        tracing::warn!("cannot list containers to reclaim addresses: {e}; retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    crate::events::follow(&docker, since, &["destroy"], |ev| {
        let shared = &shared;
        async move {
            if let Some(id) = destroyed_container(&ev) {
                release(shared, id).await;
            }
        }
    })
    .await
}

async fn release(shared: &Shared, id: &str) {
    let mut svc = shared.lock().await;
    match svc.update(|a| Ok(a.release(id))) {
        Ok(freed) if !freed.is_empty() => {
            tracing::info!(container = %id, ?freed, "container destroyed; addresses released");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(container = %id, "cannot release addresses: {e}"),
    }
}

async fn reclaim_dead(docker: &Docker, shared: &Shared) -> anyhow::Result<()> {
    // Only holders known *before* the listing can be judged by it: one that allocates while the
    // list is in flight may be missing from it yet alive. Snapshotting first avoids holding the
    // lock across a Docker call that may take long.
    let before: HashSet<String> = {
        let svc = shared.lock().await;
        svc.alloc()
            .allocations()
            .map(|(id, _)| id.to_string())
            .collect()
    };
    let opts = ListContainersOptionsBuilder::default().all(true).build();
    let live: HashSet<String> = docker
        .list_containers(Some(opts))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let dead = shared.lock().await.update(|a| {
        Ok(a.retain(|id| !before.contains(id) || !looks_like_docker_id(id) || live.contains(id)))
    })?;
    if !dead.is_empty() {
        tracing::info!(
            ?dead,
            "released addresses of containers that no longer exist"
        );
    }
    Ok(())
}

/// Only full Docker ids are judged by the container list; other idents (like `weave:expose`)
/// are not containers and must not be reclaimed.
fn looks_like_docker_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
    }

    #[test]
    fn option_defaults_and_overrides() {
        let d = Cli::parse_from(["x"]).opts;
        assert_eq!(d.ipalloc_range, DEFAULT_RANGE);
        assert_eq!(d.ipalloc_default_subnet, None);
        assert_eq!(d.http_addr, Options::default().http_addr);
        assert_eq!(d.data_dir, PathBuf::from("/weavedb"));
        let o = Cli::parse_from([
            "x",
            "--ipalloc-range",
            "10.2.0.0/16",
            "--ipalloc-default-subnet=10.2.3.0/24",
            "--http-addr",
            "127.0.0.1:9",
            "--data-dir",
            "/tmp/x",
        ])
        .opts;
        assert_eq!(o.ipalloc_range.to_string(), "10.2.0.0/16");
        assert_eq!(
            o.ipalloc_default_subnet.map(|c| c.to_string()).as_deref(),
            Some("10.2.3.0/24")
        );
        assert!(Cli::try_parse_from(["x", "--ipalloc-range", "bogus"]).is_err());
    }

    #[test]
    fn ids() {
        assert!(valid_container_id(&"a".repeat(64)));
        assert!(valid_container_id("weave:expose"));
        for bad in ["", "a b", "a/b", "a%2f", "é", &"a".repeat(129)] {
            assert!(!valid_container_id(bad), "{bad:?}");
        }
        assert!(looks_like_docker_id(&"0f".repeat(32)));
        assert!(!looks_like_docker_id("weave:expose"));
    }

    #[test]
    fn destroy_events_only() {
        let ev = |action: &str| EventMessage {
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some("abc".to_string()),
                attributes: None,
            }),
            ..Default::default()
        };
        assert_eq!(destroyed_container(&ev("destroy")), Some("abc"));
        assert_eq!(destroyed_container(&ev("die")), None);
        assert_eq!(destroyed_container(&EventMessage::default()), None);
    }
}
