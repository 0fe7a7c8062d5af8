//! Passing a request to the daemon and its answer back, untouched: bodies stream frame by frame
//! in both directions, and hijacked connections (attach, exec start, any `Upgrade`) are spliced.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};

use super::body::{self, ApiError, Body};
use super::lane::Lane;
use super::route;
use super::upstream::Upstream;

/// Where a handler leaves the daemon's side of a hijacked connection for the connection task,
/// which splices it with the client's side once hyper has written the response head.
#[derive(Clone, Default)]
pub struct HijackSlot(Arc<Mutex<Option<OnUpgrade>>>);

impl HijackSlot {
    fn put(&self, upgrade: OnUpgrade) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(upgrade);
        }
    }

    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// Old Docker clients put the socket path in `Host` on unix sockets; Go's server (the daemon)
/// rejects such a header, so it is replaced. HTTP/1.0 clients may send none at all.
pub fn sanitize_host<B>(req: &mut Request<B>) {
    let valid = req.headers().get(header::HOST).is_some_and(|h| {
        !h.is_empty()
            && !h
                .as_bytes()
                .iter()
                .any(|b| *b == b'/' || b.is_ascii_whitespace())
    });
    if !valid {
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("docker"));
    }
}

/// `lane`: the daemon connection of the client's connection, for everything but hijacks;
/// `slot`: where a hijacked stream's daemon side goes.
pub async fn forward(
    upstream: &Upstream,
    lane: &Lane,
    mut req: Request<Body>,
    slot: &HijackSlot,
) -> Result<Response<Body>, ApiError> {
    sanitize_host(&mut req);
    let client_upgrades = req.headers().contains_key(header::UPGRADE);
    let hijack =
        client_upgrades || route::is_hijack(req.method(), &route::decode(req.uri().path()));
    if hijack && !client_upgrades {
        // Ask the daemon for its `101` form even for a client that did not, so that the daemon's
        // side of the stream can always be taken over the same way.
        req.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        req.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    }
    if !hijack {
        return Ok(lane.send(upstream, req).await?.map(|b| b.boxed()));
    }
    // A connection of its own, which the stream takes over.
    let mut resp = upstream.send(req).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        slot.put(hyper::upgrade::on(&mut resp));
        let (mut parts, _) = resp.into_parts();
        if !client_upgrades {
            // What the daemon itself answers a client that hijacks without `Upgrade`.
            parts.status = StatusCode::OK;
            parts.extensions.remove::<hyper::ext::ReasonPhrase>();
            parts.headers.remove(header::UPGRADE);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(Response::from_parts(parts, body::empty()));
    }
    Ok(resp.map(|b| b.boxed()))
}
