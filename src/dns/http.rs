//! weaveDNS's HTTP API, as the original weaveDNS (and the Weave Net router) serve it:
//!
//! - `PUT /name/{id}/{ip}` with form `fqdn=NAME`: registers; 204. A name outside the domain is
//!   ignored (200), as the original did;
//! - `DELETE /name/{id}/{ip}` (optional `fqdn=`): that address's records; 204;
//! - `DELETE /name/{id}`: all of the container's records; 204;
//! - `GET /domain`: the domain (`weave.local.`); `GET /status`: a report (`?format=json`).

use std::convert::Infallible;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;

use super::State;
use super::records::{Records, normalize};
use crate::httpd::{Reply, empty, error, json, text};
use crate::network::http::MAX_BODY;
use crate::network::valid_container_id;

pub async fn run(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    crate::httpd::run(listener, move |req| handle(state.clone(), req), shutdown).await
}

/// Answers one request. Never fails: every problem becomes an HTTP status.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let want_json = crate::httpd::wants_json(&req);
    let mut form: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!("reading the request: {e}"),
            ));
        }
    };
    form.extend(form_urlencoded::parse(&body).into_owned());
    let fqdn = form
        .iter()
        .find(|(k, _)| k == "fqdn")
        .map(|(_, v)| v.as_str());
    let reply = route(&state, &method, &path, fqdn, want_json).await;
    tracing::debug!(%method, %path, status = reply.status().as_u16(), "dns request");
    Ok(reply)
}

async fn route(
    state: &State,
    method: &Method,
    path: &str,
    fqdn: Option<&str>,
    want_json: bool,
) -> Reply {
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let bad_method = || {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed on {path}"),
        )
    };
    match segs.as_slice() {
        ["domain"] if method == Method::GET => text(StatusCode::OK, state.domain.to_ascii()),
        ["status"] if method == Method::GET => status(state, want_json),
        ["domain"] | ["status"] => bad_method(),
        ["name", id, rest @ ..] if rest.len() <= 1 => {
            if !valid_container_id(id) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid container id {id:?}"),
                );
            }
            let ip = match rest.first() {
                None => None,
                Some(ip) => match ip.parse::<Ipv4Addr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => return error(StatusCode::BAD_REQUEST, format!("Invalid IP {ip:?}")),
                },
            };
            match (method, ip) {
                (&Method::PUT, Some(ip)) => register(state, id, ip, fqdn).await,
                (&Method::DELETE, Some(ip)) => {
                    let name = match fqdn.map(|f| normalize(f).ok_or(f)) {
                        None => None,
                        Some(Ok(n)) => Some(n),
                        Some(Err(f)) => {
                            return error(StatusCode::BAD_REQUEST, format!("Invalid FQDN {f:?}"));
                        }
                    };
                    let n = write(state).remove_addr(id, ip, name.as_ref());
                    tracing::info!(container = %id, %ip, removed = n, "deregistered");
                    empty(StatusCode::NO_CONTENT)
                }
                (&Method::DELETE, None) => {
                    let n = write(state).remove_container(id);
                    tracing::info!(container = %id, removed = n, "deregistered");
                    empty(StatusCode::NO_CONTENT)
                }
                (&Method::PUT, None) => error(StatusCode::BAD_REQUEST, "expected /name/ID/IP"),
                _ => bad_method(),
            }
        }
        _ => error(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

fn write(state: &State) -> std::sync::RwLockWriteGuard<'_, Records> {
    state.records.write().unwrap_or_else(|p| p.into_inner())
}

async fn register(state: &State, id: &str, ip: Ipv4Addr, fqdn: Option<&str>) -> Reply {
    let Some(given) = fqdn else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid FQDN: form field fqdn missing",
        );
    };
    let Some(name) = normalize(given) else {
        return error(StatusCode::BAD_REQUEST, format!("Invalid FQDN {given:?}"));
    };
    if !state.domain.zone_of(&name) || name == state.domain {
        return text(
            StatusCode::OK,
            format!("ignored: {name} is not in {}\n", state.domain),
        );
    }
    let added = write(state).add(id, &name, ip);
    // A container that died while the proxy was registering it would otherwise keep its
    // records until it is removed: its `die` event may already have gone by.
    if let Some(d) = &state.docker
        && super::running(d, id).await == Some(false)
    {
        write(state).remove_container(id);
        tracing::info!(container = %id, %name, %ip, "not registered: the container is not running");
        return empty(StatusCode::NO_CONTENT);
    }
    if added {
        tracing::info!(container = %id, %name, %ip, "registered");
    }
    empty(StatusCode::NO_CONTENT)
}

fn status(state: &State, want_json: bool) -> Reply {
    let records = state.records.read().unwrap_or_else(|p| p.into_inner());
    let list = records.list();
    let listen: Vec<String> = state.listen.iter().map(|a| a.to_string()).collect();
    let upstream: Vec<String> = state.upstream.iter().map(|a| a.to_string()).collect();
    if want_json {
        let entries: Vec<serde_json::Value> = list
            .iter()
            .map(|r| serde_json::json!({"ContainerID": r.id, "Hostname": r.name, "Address": r.addr.to_string()}))
            .collect();
        return json(&serde_json::json!({
            "Service": "dns",
            "Domain": state.domain.to_ascii(),
            "Listen": listen,
            "Upstream": upstream,
            "Entries": entries,
        }));
    }
    let mut out = format!(
        "Service: dns\nDomain: {}\nListen: {}\nUpstream: {}\nEntries: {}\n",
        state.domain,
        listen.join(" "),
        upstream.join(" "),
        list.len()
    );
    for r in list {
        out.push_str(&format!(
            "{} {} {}\n",
            r.name,
            r.addr,
            &r.id[..r.id.len().min(12)]
        ));
    }
    text(StatusCode::OK, out)
}
