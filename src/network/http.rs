//! The IPAM part of the Weave Net router's HTTP API, served over plain HTTP/1.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use super::alloc::{AllocError, Allocator};
use super::store::{Store, StoreError};
use super::valid_container_id;
use crate::httpd::{Reply, empty, error, json, text};
use crate::weave_cidr::Cidr;

/// Form bodies (`check-alive=true`) are tiny; anything bigger is not for us.
pub(crate) const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("unable to persist allocations: {0}")]
    Store(#[from] StoreError),
}

/// The allocator and its store; every change is persisted before anyone hears about it.
#[derive(Debug)]
pub struct Service {
    alloc: Allocator,
    store: Store,
}

pub type Shared = Arc<Mutex<Service>>;

impl Service {
    pub fn new(alloc: Allocator, store: Store) -> Service {
        Service { alloc, store }
    }

    pub fn alloc(&self) -> &Allocator {
        &self.alloc
    }

    /// Applies `f` to a copy and only adopts it once it is on disk, so a failed write never
    /// leaves memory and disk disagreeing (nor hands out an address a restart would forget).
    /// The write is synchronous on purpose: it happens under the lock, so allocations are
    /// serialized with their persistence, and the file is small.
    pub fn update<T>(
        &mut self,
        f: impl FnOnce(&mut Allocator) -> Result<T, AllocError>,
    ) -> Result<T, ServiceError> {
        let mut next = self.alloc.clone();
        let out = f(&mut next)?;
        if next != self.alloc {
            self.store.save(&next)?;
            self.alloc = next;
        }
        Ok(out)
    }
}

fn service_error(prefix: &str, e: ServiceError) -> Reply {
    match e {
        ServiceError::Alloc(e) => error(StatusCode::BAD_REQUEST, format!("{prefix}: {e}")),
        ServiceError::Store(e) => {
            tracing::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

/// Path parameters `{ip}/{len}` as a CIDR; the error is the 400 reason.
fn parse_cidr(ip: &str, len: &str) -> Result<Cidr, String> {
    if ip.parse::<Ipv4Addr>().is_err() {
        return Err(format!("invalid IP address {ip:?}"));
    }
    format!("{ip}/{len}")
        .parse()
        .map_err(|_| format!("invalid prefix length {len:?}"))
}

/// Answers one request. Never fails: every problem becomes an HTTP status.
pub async fn handle(shared: Shared, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let want_json = crate::httpd::wants_json(&req);
    // The original client sends `check-alive=true` as a form; we have no notion of "alive"
    // beyond Docker events, so read it (keeps the connection in a clean state) and ignore it.
    let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
    let reply = route(&shared, &method, &path, want_json).await;
    tracing::debug!(%method, %path, status = reply.status().as_u16(), "ipam request");
    Ok(reply)
}

async fn route(shared: &Shared, method: &Method, path: &str, want_json: bool) -> Reply {
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let bad_method = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("method {method} not allowed on {path}"),
        )
    };
    match segs.as_slice() {
        ["status"] if method == Method::GET => status(shared, want_json).await,
        ["status"] => bad_method(),
        ["ipinfo", "defaultsubnet"] if method == Method::GET => {
            let subnet = shared.lock().await.alloc().default_subnet();
            text(StatusCode::OK, format!("{subnet}\n"))
        }
        ["ipinfo", "defaultsubnet"] => bad_method(),
        ["ip", id, rest @ ..] if rest.len() <= 2 => {
            if !valid_container_id(id) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid container id {id:?}"),
                );
            }
            ip_route(shared, method, id, rest)
                .await
                .unwrap_or_else(|reason| error(StatusCode::BAD_REQUEST, reason))
        }
        _ => error(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

async fn ip_route(
    shared: &Shared,
    method: &Method,
    id: &str,
    rest: &[&str],
) -> Result<Reply, String> {
    let bad_method = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("method {method} not allowed here"),
        )
    };
    let reply = match (method, rest) {
        (&Method::POST, []) => {
            let mut svc = shared.lock().await;
            let subnet = svc.alloc().default_subnet();
            match svc.update(|a| a.allocate(id, subnet)) {
                Ok(cidr) => text(StatusCode::OK, cidr.to_string()),
                Err(e) => service_error("Unable to allocate", e),
            }
        }
        (&Method::POST, [net, len]) => {
            let subnet = parse_cidr(net, len)?;
            let mut svc = shared.lock().await;
            match svc.update(|a| a.allocate(id, subnet)) {
                Ok(cidr) => text(StatusCode::OK, cidr.to_string()),
                Err(e) => service_error("Unable to allocate", e),
            }
        }
        (&Method::PUT, [ip, len]) => {
            let cidr = parse_cidr(ip, len)?;
            let mut svc = shared.lock().await;
            match svc.update(|a| a.claim(id, cidr)) {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => service_error("Unable to claim", e),
            }
        }
        (&Method::GET, []) => {
            let cidrs = shared.lock().await.alloc().lookup(id);
            if cidrs.is_empty() {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no addresses for container {id}"),
                )
            } else {
                let body: String = cidrs.iter().map(|c| format!("{c}\n")).collect();
                text(StatusCode::OK, body)
            }
        }
        (&Method::DELETE, []) => {
            let mut svc = shared.lock().await;
            match svc.update(|a| Ok(a.release(id))) {
                Ok(_) => empty(StatusCode::NO_CONTENT),
                Err(e) => service_error("Unable to release", e),
            }
        }
        (&Method::DELETE, [ip]) => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("invalid IP address {ip:?}"))?;
            let mut svc = shared.lock().await;
            // Releasing what is not held is not an error: the caller's goal is already met.
            match svc.update(|a| Ok(a.release_addr(id, ip))) {
                Ok(_) => empty(StatusCode::NO_CONTENT),
                Err(e) => service_error("Unable to release", e),
            }
        }
        (&Method::POST | &Method::PUT | &Method::GET | &Method::DELETE, _) => error(
            StatusCode::BAD_REQUEST,
            "expected /ip/ID, /ip/ID/IP or /ip/ID/IP/PREFIXLEN",
        ),
        _ => bad_method(),
    };
    Ok(reply)
}

async fn status(shared: &Shared, want_json: bool) -> Reply {
    let st = shared.lock().await.alloc().status();
    if want_json {
        let body = serde_json::json!({
            "Service": "ipam",
            "Range": st.range.to_string(),
            "DefaultSubnet": st.default_subnet.to_string(),
            "Allocated": st.allocated,
        });
        json(&body)
    } else {
        text(
            StatusCode::OK,
            format!(
                "Service: ipam\nRange: {}\nDefaultSubnet: {}\nAllocated: {}\n",
                st.range, st.default_subnet, st.allocated
            ),
        )
    }
}

/// Serves the API until `shutdown` resolves.
pub async fn run(listener: TcpListener, shared: Shared, shutdown: impl Future<Output = ()>) {
    crate::httpd::run(listener, move |req| handle(shared.clone(), req), shutdown).await
}
