//! The proxy's client of weaveDNS's HTTP API (ours, or a Weave Net router's, which serves the
//! same `/name` and `/domain` routes on its own port).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Method;

use crate::network::valid_container_id;
use crate::router_api::{RouterClient, RouterError};

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:6785";
/// "Is weaveDNS running?" is asked on every create: it must never hold one up for long.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A probe's answer is reused this long: bursts of creates ask once, and a stop or a launch
/// of weaveDNS is noticed within a second.
const CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("weaveDNS is not running: start it with `weave launch-dns`")]
    NotRunning,
    #[error("weaveDNS: {0}")]
    Api(String),
    #[error("weaveDNS did not answer within {0:?}")]
    Timeout(Duration),
}

impl From<RouterError> for DnsError {
    fn from(e: RouterError) -> DnsError {
        match e {
            RouterError::NotRunning => DnsError::NotRunning,
            RouterError::Api { status, message } => DnsError::Api(format!("{status}: {message}")),
            other => DnsError::Api(other.to_string()),
        }
    }
}

pub struct DnsClient {
    http: RouterClient,
    probe: Mutex<Option<(Instant, Option<String>)>>,
}

impl DnsClient {
    pub fn new(base_url: &str) -> Result<DnsClient, RouterError> {
        Ok(DnsClient {
            http: RouterClient::new(base_url)?,
            probe: Mutex::new(None),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        form: String,
        timeout: Duration,
    ) -> Result<String, DnsError> {
        match tokio::time::timeout(timeout, self.http.request_form(method, path, form)).await {
            Ok(reply) => Ok(reply?.expect_ok()?),
            Err(_) => Err(DnsError::Timeout(timeout)),
        }
    }

    /// weaveDNS's domain (`weave.local.`) when it answers, `None` when it does not.
    pub async fn domain(&self) -> Option<String> {
        if let Some((at, d)) = self
            .probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return d.clone();
        }
        let d = match self
            .call(Method::GET, "/domain", String::new(), PROBE_TIMEOUT)
            .await
        {
            Ok(text) => normalize_domain(&text),
            Err(e) => {
                tracing::debug!("weaveDNS probe: {e}");
                None
            }
        };
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), d.clone()));
        d
    }

    /// weaveDNS's own report (`GET /status`).
    pub async fn status(&self) -> Result<String, DnsError> {
        self.call(Method::GET, "/status", String::new(), CALL_TIMEOUT)
            .await
    }

    /// Registers `ip` of container `id` under `fqdn`.
    pub async fn register(
        &self,
        id: &str,
        ip: std::net::Ipv4Addr,
        fqdn: &str,
    ) -> Result<(), DnsError> {
        if !valid_container_id(id) {
            return Err(DnsError::Api(format!("invalid container id {id:?}")));
        }
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("fqdn", fqdn)
            .finish();
        self.call(Method::PUT, &format!("/name/{id}/{ip}"), form, CALL_TIMEOUT)
            .await
            .map(drop)
    }
}

/// `weave.local` or `weave.local.` (plus whitespace) → `weave.local.`; `None` if empty.
pub fn normalize_domain(text: &str) -> Option<String> {
    let d = text.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty() && !d.contains(char::is_whitespace)).then(|| format!("{d}."))
}

/// Whether `fqdn` lies inside `domain` (both as weaveDNS writes them; case-insensitive).
pub fn in_domain(fqdn: &str, domain: &str) -> bool {
    let f = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    !d.is_empty()
        && f.len() > d.len() + 1
        && f.ends_with(&d)
        && f.as_bytes()[f.len() - d.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("weave.local.\n").as_deref(),
            Some("weave.local.")
        );
        assert_eq!(
            normalize_domain("Weave.Local").as_deref(),
            Some("weave.local.")
        );
        assert_eq!(normalize_domain("  "), None);
        assert!(in_domain("pingme.weave.local", "weave.local."));
        assert!(in_domain("a.b.Weave.Local.", "weave.local."));
        assert!(!in_domain("weave.local", "weave.local."));
        assert!(!in_domain("pingme.notweave.local", "weave.local."));
        assert!(!in_domain("pingme", "weave.local."));
        assert!(!in_domain("x.weave.local", ""));
    }
}
