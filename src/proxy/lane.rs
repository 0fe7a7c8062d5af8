//! The daemon's side of one client connection: a daemon connection of its own, opened at the
//! client's first request and reused for the ones that follow on the same connection. A
//! keep-alive client therefore costs the daemon one connection, as it would without the proxy,
//! and a request costs no connect or handshake.
//!
//! The daemon connection is driven by the client connection's own task ([`Lane::poll_drive`],
//! polled next to hyper's server connection), so a request and its answer never wait for
//! another task, possibly on another thread, to be scheduled.
//!
//! Hijacked streams do not use the lane: they take their daemon connection over for good.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::body::{ApiError, Body};
use super::upstream::{BoxIo, Upstream};

type Driver = Pin<Box<Connection<TokioIo<BoxIo>, Body>>>;

#[derive(Clone, Default)]
pub struct Lane(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    sender: Option<SendRequest<Body>>,
    driver: Option<Driver>,
}

impl Lane {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the daemon connection along; to be polled by the task that serves the client,
    /// after anything that may have started a request.
    pub fn poll_drive(&self, cx: &mut Context<'_>) {
        let mut state = self.state();
        if let Some(driver) = state.driver.as_mut()
            && let Poll::Ready(result) = driver.as_mut().poll(cx)
        {
            if let Err(e) = result {
                tracing::debug!("daemon connection ended: {e}");
            }
            // The sender now reports itself closed; the next request opens a new connection.
            state.driver = None;
        }
    }

    /// Sends `req` on the lane's connection, opening one if there is none or the daemon
    /// closed it. A request that never left because the connection closed under it is sent
    /// again on a new one; anything else is the daemon's answer or its error.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, ApiError> {
        loop {
            let mut kept = self.state().sender.take();
            // Ready once the previous answer has been read to its end; an error if the daemon
            // closed the connection.
            if let Some(s) = kept.as_mut()
                && s.ready().await.is_err()
            {
                kept = None;
            }
            let (mut sender, reused) = match kept {
                Some(s) => (s, true),
                None => {
                    let (sender, driver) = upstream.open().await?;
                    self.state().driver = Some(Box::pin(driver));
                    (sender, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.state().sender = Some(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(upstream.no_answer(e.into_error())),
                },
            }
        }
    }
}
