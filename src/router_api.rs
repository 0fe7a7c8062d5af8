//! The proxy's client of the router's IPAM HTTP API: ours (`crate::network`) or a real Weave Net
//! router, which speak the same protocol.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::network::valid_container_id;
use crate::weave_cidr::Cidr;

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:6784";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A router that accepts but never answers (paused, wedged) must not hold a `docker start`
/// for ever: this is well inside weavewait's own 30 s.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies are an address or a status page; cap what we buffer from a misbehaving server.
const MAX_REPLY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("weave is not running: start it with `weave launch`")]
    NotRunning,
    #[error("weave router: {status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("weave router sent an unexpected reply: {0}")]
    Parse(String),
    #[error("talking to the weave router: {0}")]
    Http(String),
    #[error("invalid weave router address {0:?}")]
    BadUrl(String),
    #[error("invalid container id {0:?}")]
    BadId(String),
}

#[derive(Debug, Clone)]
pub struct RouterClient {
    /// `host:port`, used both to connect and as the `Host` header.
    authority: String,
}

impl Default for RouterClient {
    fn default() -> RouterClient {
        RouterClient {
            authority: "127.0.0.1:6784".to_string(),
        }
    }
}

impl RouterClient {
    /// `base_url` is `http://host:port` or a bare `host:port` (the form of `WEAVE_HTTP_ADDR`).
    pub fn new(base_url: &str) -> Result<RouterClient, RouterError> {
        let bad = || RouterError::BadUrl(base_url.to_string());
        let (rest, scheme_given) = match base_url.split_once("://") {
            Some(("http", rest)) => (rest, true),
            Some(_) => return Err(bad()),
            None => (base_url, false),
        };
        let authority = rest.trim_end_matches('/');
        let uri: hyper::Uri = format!("http://{authority}/").parse().map_err(|_| bad())?;
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.as_str() != authority || auth.as_str().contains('@') {
            // A path, query or userinfo: not something the router API has.
            return Err(bad());
        }
        let authority = match auth.port_u16() {
            Some(_) => authority.to_string(),
            // A bare word is more likely a mistake than a host on port 80.
            None if scheme_given && auth.host() == authority => format!("{authority}:80"),
            None => return Err(bad()),
        };
        Ok(RouterClient { authority })
    }

    /// An address for `id` in `subnet`, or in the router's default subnet if `None`.
    pub async fn allocate(&self, id: &str, subnet: Option<Cidr>) -> Result<Cidr, RouterError> {
        check_id(id)?;
        let path = match subnet {
            None => format!("/ip/{id}"),
            Some(s) => format!("/ip/{id}/{}/{}", s.addr, s.prefix),
        };
        let body = self.request(Method::POST, &path).await?.expect_ok()?;
        let text = body.trim();
        // A real router answers `cancelled` with 200 when it gave up (e.g. container gone).
        text.parse()
            .map_err(|_| RouterError::Parse(format!("expected an address, got {text:?}")))
    }

    /// Records that `id` holds exactly `cidr`.
    pub async fn claim(&self, id: &str, cidr: Cidr) -> Result<(), RouterError> {
        check_id(id)?;
        let path = format!("/ip/{id}/{}/{}", cidr.addr, cidr.prefix);
        self.request(Method::PUT, &path).await?.expect_ok()?;
        Ok(())
    }

    /// Frees every address of `id`.
    pub async fn release(&self, id: &str) -> Result<(), RouterError> {
        check_id(id)?;
        self.request(Method::DELETE, &format!("/ip/{id}"))
            .await?
            .expect_ok()?;
        Ok(())
    }

    /// The addresses `id` holds; empty if none.
    pub async fn lookup(&self, id: &str) -> Result<Vec<Cidr>, RouterError> {
        check_id(id)?;
        let reply = self.request(Method::GET, &format!("/ip/{id}")).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let body = reply.expect_ok()?;
        // Lenient about separators: one per line from us, Go's `[a b]` slice form from others.
        body.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',')
            .filter(|w| !w.is_empty())
            .map(|w| {
                w.parse()
                    .map_err(|_| RouterError::Parse(format!("expected addresses, got {body:?}")))
            })
            .collect()
    }

    /// The router's human-readable status.
    pub async fn status(&self) -> Result<String, RouterError> {
        self.request(Method::GET, "/status").await?.expect_ok()
    }

    async fn request(&self, method: Method, path: &str) -> Result<RawReply, RouterError> {
        self.request_form(method, path, "check-alive=true".to_string())
            .await
    }

    /// One request with `form` as its body; `NotRunning` when nothing listens.
    pub(crate) async fn request_form(
        &self,
        method: Method,
        path: &str,
        form: String,
    ) -> Result<RawReply, RouterError> {
        let http = |e: hyper::Error| RouterError::Http(e.to_string());
        // Refused or unreachable both mean "nothing useful is listening there".
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(&self.authority),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(addr = %self.authority, "cannot connect to weave router: {e}");
                return Err(RouterError::NotRunning);
            }
            Err(_) => return Err(RouterError::NotRunning),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("weave router connection: {e}");
            }
        });
        // Like the original Go client: parameters travel as a form, even on PUT and DELETE.
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| RouterError::Http(e.to_string()))?;
        let exchange = async {
            let resp = sender.send_request(req).await.map_err(http)?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| RouterError::Http(e.to_string()))?
                .to_bytes();
            let body = String::from_utf8(bytes.to_vec())
                .map_err(|_| RouterError::Parse("reply is not UTF-8".to_string()))?;
            Ok(RawReply { status, body })
        };
        let result = match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(RouterError::Http(format!(
                "{} accepted the connection but did not answer within {} s",
                self.authority,
                REPLY_TIMEOUT.as_secs()
            ))),
        };
        // Dropping the sender lets the connection task finish; abort covers a stuck server.
        drop(sender);
        driver.abort();
        result
    }
}

fn check_id(id: &str) -> Result<(), RouterError> {
    if valid_container_id(id) {
        Ok(())
    } else {
        Err(RouterError::BadId(id.to_string()))
    }
}

pub(crate) struct RawReply {
    pub status: StatusCode,
    pub body: String,
}

impl RawReply {
    pub(crate) fn expect_ok(self) -> Result<String, RouterError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(RouterError::Api {
                status: self.status,
                message: self.body.trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(RouterClient::default().authority, "127.0.0.1:6784");
        assert_eq!(
            RouterClient::new(DEFAULT_BASE_URL).unwrap().authority,
            "127.0.0.1:6784"
        );
        assert_eq!(
            RouterClient::new("127.0.0.1:9/").unwrap().authority,
            "127.0.0.1:9"
        );
        assert_eq!(
            RouterClient::new("http://localhost").unwrap().authority,
            "localhost:80"
        );
        for bad in [
            "https://x:1",
            "http://x:1/path",
            "http://u@x:1",
            "",
            "http://x:notaport",
            "notaurl",
        ] {
            assert!(RouterClient::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_error_keeps_the_server_line() {
        let e = RawReply {
            status: StatusCode::BAD_REQUEST,
            body: "Unable to claim: address 10.2.1.1 is already in use by container abc\n".into(),
        }
        .expect_ok()
        .unwrap_err();
        match e {
            RouterError::Api { status, message } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert!(message.ends_with("container abc"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            RouterError::NotRunning.to_string(),
            "weave is not running: start it with `weave launch`"
        );
    }
}
