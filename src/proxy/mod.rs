//! HTTP plumbing: listeners, one task per client connection, routing to the interceptors or to
//! plain forwarding, and the splice of hijacked streams.

pub mod body;
pub mod census;
pub mod forward;
pub mod halfclose;
pub mod lane;
pub mod listen;
pub mod route;
pub mod splice;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use crate::intercept;
use body::Body;
use forward::HijackSlot;
use lane::Lane;
use listen::Listener;
use route::Route;
use upstream::Upstream;

pub struct Proxy {
    pub upstream: Upstream,
    /// `None`: a plain pass-through proxy (nothing is intercepted).
    pub weave: Option<Arc<intercept::Weave>>,
}

impl Proxy {
    async fn handle(
        &self,
        req: Request<Incoming>,
        lane: &Lane,
        slot: &HijackSlot,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let req = req.map(|b| b.boxed());
        let routed = route::decode(&path);
        let result = match (&self.weave, route::route(&method, &routed)) {
            (Some(weave), Route::Create) => {
                intercept::create::handle(weave, &self.upstream, lane, req).await
            }
            (Some(weave), Route::Start(id) | Route::Restart(id)) => {
                intercept::start::handle(weave, &self.upstream, lane, req, id).await
            }
            _ => forward::forward(&self.upstream, lane, req, slot).await,
        };
        let resp = result.unwrap_or_else(|e| {
            tracing::warn!(%method, path, status = e.status.as_u16(), "{}", e.message);
            e.into_response()
        });
        tracing::debug!(
            %method,
            path,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        resp
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Serves until `shutdown` resolves, then stops accepting and gives open connections `grace` to
/// finish what they are doing.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, recv() returns None.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let proxy = proxy.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.changed() => break,
                    r = listener.accept() => match r {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning; never die.
                            tracing::warn!("accept on {}: {e}", listener.local_addr());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                tokio::spawn(serve_connection(
                    accepted,
                    proxy.clone(),
                    stop.clone(),
                    done.clone(),
                ));
            }
            drop(listener);
        }));
    }
    drop(done_tx);
    shutdown.await;
    tracing::info!("shutting down: no new connections; waiting up to {grace:?} for open ones");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    let _ = tokio::time::timeout(grace, done_rx.recv()).await;
}

async fn serve_connection(
    accepted: listen::Accepted,
    proxy: Arc<Proxy>,
    mut stop: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    let _counted = census::enter();
    // Boxed: the TLS handshake's future is 4.7 KB, and inline it would make every connection's
    // task that much larger for the connection's whole life (5.5 KB instead of 1.1 KB).
    let Ok(io) = Box::pin(accepted.establish()).await else {
        return;
    };
    let client_eof = halfclose::Flag::default();
    let (io, lookout) = halfclose::EofWatch::new(io, client_eof.clone());
    let slot = HijackSlot::default();
    let lane = Lane::new(client_eof);
    let svc = {
        let slot = slot.clone();
        let lane = lane.clone();
        service_fn(move |req| {
            let proxy = proxy.clone();
            let slot = slot.clone();
            let lane = lane.clone();
            Box::pin(async move { Ok(proxy.handle(req, &lane, &slot).await) }) as HandlerFuture
        })
    };
    let mut conn = http1::Builder::new()
        // The daemon's responses go out as the daemon wrote them: header case, no added Date.
        .preserve_header_case(true)
        .title_case_headers(true)
        .auto_date_header(false)
        // A client may shut down its sending side once its request is out (`curl -T`, HTTP/1.0
        // tools, `nc -N`) and still wait for the answer; the daemon answers those, so do we.
        .half_close(true)
        .serve_connection(TokioIo::new(io), svc);
    let mut stopping = *stop.borrow();
    if stopping {
        std::pin::Pin::new(&mut conn).graceful_shutdown();
    }
    // Parts mode (`without_shutdown`) serves both hijack forms: the `101` upgrade and the older
    // plain `200` raw stream, which hyper's own upgrade machinery cannot take over.
    let result = loop {
        tokio::select! {
            // The lane's daemon connection is driven here, around the client's, so that a
            // request the handler starts is on its way before this task yields.
            r = std::future::poll_fn(|cx| {
                lane.poll_drive(cx);
                let r = conn.poll_without_shutdown(cx);
                if r.is_pending() && lane.answering() {
                    lookout.poll_look(cx);
                }
                lane.poll_drive(cx);
                r
            }) => break r,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!("client connection: {e}");
        return;
    }
    let http1::Parts { io, read_buf, .. } = conn.into_parts();
    drop(lookout);
    let (io, ahead) = io.into_inner().into_inner();
    // The stream has a daemon connection of its own; the lane's is closed now, not when the
    // stream ends.
    drop(lane);
    if let Some(upgrade) = slot.take() {
        let early = if ahead.is_empty() {
            read_buf
        } else {
            [&read_buf[..], &ahead[..]].concat().into()
        };
        splice::splice(io, early, upgrade).await;
    }
}
