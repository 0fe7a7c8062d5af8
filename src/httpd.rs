//! The small HTTP/1.1 servers of the weave services (the network service's IPAM API and
//! weaveDNS's API): plain-text replies in the style of Go's `http.Error`, and an accept loop
//! with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long shutdown waits for requests already being answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub type Reply = Response<Full<Bytes>>;

pub fn text(status: StatusCode, body: String) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub fn json(body: &serde_json::Value) -> Reply {
    let mut resp = text(StatusCode::OK, format!("{body}\n"));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn empty(status: StatusCode) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Error replies are one line, newline-terminated, like Go's `http.Error`.
pub fn error(status: StatusCode, msg: impl std::fmt::Display) -> Reply {
    // Never let a newline from an echoed input split the reply into several lines.
    let line = msg.to_string().replace(['\r', '\n'], " ");
    text(status, format!("{line}\n"))
}

/// `?format=json` or `Accept: application/json`.
pub fn wants_json<B>(req: &Request<B>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"))
        || req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
}

/// Accepts connections until `shutdown` resolves, then lets requests in flight finish (bounded
/// by `DRAIN_TIMEOUT`) so that nothing is cut off between changing state and replying.
pub async fn run<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let handler = handler.clone();
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(handler);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    let res = tokio::select! {
                        res = conn.as_mut() => res,
                        // The guard wait_for returns is not Send; drop it inside.
                        _ = async { drop(stop.wait_for(|s| *s).await) } => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = res {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("aborting connections still open after shutdown");
        conns.abort_all();
    }
}
