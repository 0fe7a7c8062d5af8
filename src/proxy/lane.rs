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
//!
//! A client's half-close is passed on (see [`super::halfclose`]): once the client has ended its
//! input and the daemon has begun to answer, the lane's daemon connection is shut for writing.
//! A further request the client had already sent (pipelined) goes on a new connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::body::{ApiError, Body};
use super::halfclose::{Closable, Flag};
use super::upstream::{BoxIo, Upstream};

type Driver = Pin<Box<Connection<TokioIo<BoxIo>, Body>>>;

#[derive(Clone)]
pub struct Lane(Arc<Mutex<State>>);

struct State {
    sender: Option<SendRequest<Body>>,
    driver: Option<Driver>,
    /// The client connection has read end-of-file.
    client_eof: Flag,
    /// Asks the current daemon connection to shut its writing side.
    shut: Flag,
    /// The daemon has begun to answer the request last sent.
    answered: bool,
}

impl Lane {
    pub fn new(client_eof: Flag) -> Lane {
        Lane(Arc::new(Mutex::new(State {
            sender: None,
            driver: None,
            client_eof,
            shut: Flag::default(),
            answered: false,
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The daemon has begun to answer, and the client might end its input while it does.
    pub fn answering(&self) -> bool {
        self.state().answered
    }

    /// Moves the daemon connection along; to be polled by the task that serves the client,
    /// after anything that may have started a request.
    pub fn poll_drive(&self, cx: &mut Context<'_>) {
        let mut state = self.state();
        if state.answered && state.client_eof.is_set() {
            state.shut.set();
        }
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
            let mut kept = {
                let mut state = self.state();
                // A connection shut for writing takes no further request.
                if state.shut.is_set() {
                    state.sender = None;
                }
                state.answered = false;
                state.sender.take()
            };
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
                    let shut = Flag::default();
                    let closable = shut.clone();
                    let (sender, driver) = upstream
                        .open(move |io| Box::new(Closable::new(io, closable)) as BoxIo)
                        .await?;
                    let mut state = self.state();
                    state.driver = Some(Box::pin(driver));
                    state.shut = shut;
                    (sender, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let mut state = self.state();
                    state.sender = Some(sender);
                    state.answered = true;
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
