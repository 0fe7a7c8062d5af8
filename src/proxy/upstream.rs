//! The Docker daemon behind the proxy: connections to it, one per client connection (see
//! `lane`) and a fresh one for each hijacked stream, which takes it over; over TLS for a
//! daemon that listens only with `--tlsverify`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::body::ApiError;

/// Anything a connection can run over: tcp, unix, tls.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
pub type BoxIo = Box<dyn Io>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAddr {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

impl FromStr for DockerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<DockerAddr, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "docker address \"{s}\": the socket path must be absolute"
                ));
            }
            Ok(DockerAddr::Unix(path.into()))
        } else if let Some(hostport) = s.strip_prefix("tcp://") {
            let hostport = hostport.trim_end_matches('/');
            match hostport.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(DockerAddr::Tcp(hostport.to_string()))
                }
                _ => Err(format!("docker address \"{s}\": expected tcp://HOST:PORT")),
            }
        } else if s.starts_with('/') {
            Ok(DockerAddr::Unix(s.into()))
        } else {
            Err(format!(
                "docker address \"{s}\": expected unix:///PATH or tcp://HOST:PORT"
            ))
        }
    }
}

impl fmt::Display for DockerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerAddr::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}

impl DockerAddr {
    /// The name the daemon's certificate must carry: the host of `tcp://HOST:PORT`.
    fn server_name(&self) -> Result<rustls_pki_types::ServerName<'static>, String> {
        let DockerAddr::Tcp(hostport) = self else {
            return Err(format!(
                "TLS to the daemon needs a tcp://HOST:PORT address, not {self}"
            ));
        };
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("docker address {self}: {e}"))
    }
}

#[derive(Clone)]
struct DaemonTls {
    connector: tokio_rustls::TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: DockerAddr,
    /// A dead daemon must be reported well within a second.
    pub connect_timeout: Duration,
    tls: Option<DaemonTls>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Upstream {
    pub fn new(addr: DockerAddr) -> Upstream {
        Upstream {
            addr,
            connect_timeout: Duration::from_millis(800),
            tls: None,
        }
    }

    /// Every connection to the daemon goes over TLS with `config`, checking that the daemon's
    /// certificate names the host of its address.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Result<Upstream, String> {
        let name = self.addr.server_name()?;
        self.tls = Some(DaemonTls {
            connector: tokio_rustls::TlsConnector::from(config),
            name,
        });
        Ok(self)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects (and for TLS completes the handshake) within the connect timeout.
    pub async fn connect(&self) -> std::io::Result<BoxIo> {
        let connect = async {
            Ok::<BoxIo, std::io::Error>(match (&self.addr, &self.tls) {
                (DockerAddr::Unix(path), _) => Box::new(UnixStream::connect(path).await?),
                (DockerAddr::Tcp(hostport), tls) => {
                    let s = TcpStream::connect(hostport.as_str()).await?;
                    s.set_nodelay(true)?;
                    match tls {
                        Some(t) => Box::new(t.connector.connect(t.name.clone(), s).await?),
                        None => Box::new(s),
                    }
                }
            })
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            )),
        }
    }

    fn unreachable(&self, e: impl fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "weaveproxy: cannot connect to the Docker daemon at {}: {e}. Is the docker daemon running?",
                self.addr
            ),
        )
    }

    /// Sends one request on a new connection. The connection task runs with upgrades enabled, so
    /// a `101` answer can be taken over with `hyper::upgrade::on`.
    pub async fn send<B>(&self, req: Request<B>) -> Result<Response<Incoming>, ApiError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut sender, conn) = self.open(|io| io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("daemon connection ended: {e}");
            }
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| self.no_answer(e))
    }

    pub(super) fn no_answer(&self, e: impl fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "weaveproxy: the Docker daemon at {} did not answer: {e}",
                self.addr
            ),
        )
    }

    /// A new connection; the caller drives it (`send` for one request, `lane` for several).
    pub(super) async fn open<B>(
        &self,
        wrap: impl FnOnce(BoxIo) -> BoxIo,
    ) -> Result<(SendRequest<B>, Connection<TokioIo<BoxIo>, B>), ApiError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let io = wrap(self.connect().await.map_err(|e| self.unreachable(e))?);
        hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .title_case_headers(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "unix:///var/run/docker.sock".parse(),
            Ok(DockerAddr::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!("/x.sock".parse(), Ok(DockerAddr::Unix("/x.sock".into())));
        assert_eq!(
            "tcp://127.0.0.1:2375".parse(),
            Ok(DockerAddr::Tcp("127.0.0.1:2375".into()))
        );
        assert!("tcp://127.0.0.1".parse::<DockerAddr>().is_err());
        assert!("unix://relative".parse::<DockerAddr>().is_err());
        assert!("http://x:1".parse::<DockerAddr>().is_err());
        assert_eq!(DockerAddr::Unix("/a".into()).to_string(), "unix:///a");
    }
}
