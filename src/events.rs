//! The daemon's event stream: containers the proxy prepared are attached whenever they start,
//! also when the proxy did not start them (restart policies, `docker restart` from elsewhere,
//! a daemon restart). The stream is resubscribed with backoff if it drops, from where it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;

use crate::intercept::Weave;
use crate::intercept::start::{Outcome, attach_container};

const MAX_BACKOFF: Duration = Duration::from_secs(10);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Follows `start` events forever.
pub async fn watch(weave: Arc<Weave>) {
    let mut since = now_secs();
    let mut backoff = Duration::from_millis(500);
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string()]),
        ]);
        let docker = match weave.docker.get().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("docker daemon: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut stream = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        while let Some(event) = stream.next().await {
            match event {
                Ok(msg) => {
                    backoff = Duration::from_millis(500);
                    if let Some(t) = msg.time {
                        since = since.max(t);
                    }
                    if let Some(id) = msg.actor.and_then(|a| a.id) {
                        tokio::spawn(attach_with_retry(weave.clone(), id));
                    }
                }
                Err(e) => {
                    tracing::warn!("docker event stream: {e}");
                    break;
                }
            }
        }
        tracing::warn!("docker event stream ended; resubscribing in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Follows the daemon's container events named in `actions` forever, from `since` (seconds),
/// resubscribing with backoff from the last event seen when the stream breaks; `on_event` gets
/// each event in order. For the services (network, weaveDNS), which have a client of their own.
pub async fn follow<F, Fut>(
    docker: &bollard::Docker,
    mut since: i64,
    actions: &[&str],
    mut on_event: F,
) where
    F: FnMut(bollard::models::EventMessage) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                actions.iter().map(|a| a.to_string()).collect(),
            ),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        let why = loop {
            match events.next().await {
                None => break "event stream ended".to_string(),
                Some(Err(e)) => break format!("event stream failed: {e}"),
                Some(Ok(ev)) => {
                    backoff = Duration::from_millis(500);
                    if let Some(t) = ev.time {
                        since = since.max(t);
                    }
                    on_event(ev).await;
                }
            }
        };
        tracing::warn!("{why}; resubscribing in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Now, in the daemon's event time (seconds since the epoch).
pub fn now() -> i64 {
    now_secs()
}

/// At proxy start: prepared containers that run without their interface get it. Never kills.
pub async fn attach_running(weave: Arc<Weave>) {
    let filters = HashMap::from([("status".to_string(), vec!["running".to_string()])]);
    let docker = match weave.docker.get().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("docker daemon: {e}; not re-attaching running containers");
            return;
        }
    };
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: false,
            limit: None,
            size: false,
            filters: Some(filters),
        }))
        .await;
    match list {
        Ok(containers) => {
            for c in containers {
                if let Some(id) = c.id {
                    tokio::spawn(attach_with_retry(weave.clone(), id));
                }
            }
        }
        Err(e) => tracing::warn!("listing running containers at start-up: {e}"),
    }
}

/// The router may be starting too, or restarting: retry for a while, then give up (weavewait
/// has a deadline of its own, so the application never runs without its network).
async fn attach_with_retry(weave: Arc<Weave>, id: String) {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=8 {
        match attach_container(&weave, &id).await {
            Ok(Outcome::Attached { .. } | Outcome::NotOurs | Outcome::NotRunning) => return,
            Err(e) if e.is_permanent() => {
                tracing::error!(container = %&id[..id.len().min(12)], "attach: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(container = %&id[..id.len().min(12)], attempt, "attach: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
    tracing::error!(container = %&id[..id.len().min(12)], "giving up attaching");
}
