//! Listening sockets: `tcp://HOST:PORT` (TLS when configured) and `unix:///PATH` (always plain:
//! file permissions guard it, as they guard the daemon's own socket).

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::TlsAcceptor;

use super::upstream::BoxIo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "listen address \"{s}\": the socket path must be absolute"
                ));
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(s.into()));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s).trim_end_matches('/');
        if hostport.contains("://") {
            return Err(format!(
                "listen address \"{s}\": expected tcp://HOST:PORT or unix:///PATH"
            ));
        }
        match hostport.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => {
                let host = if host.is_empty() { "0.0.0.0" } else { host };
                Ok(ListenAddr::Tcp(format!("{host}:{port}")))
            }
            _ => Err(format!(
                "listen address \"{s}\": expected tcp://HOST:PORT or unix:///PATH"
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(hp) => write!(f, "tcp://{hp}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

pub enum Listener {
    Tcp(TcpListener, Option<TlsAcceptor>),
    /// The path is removed when the listener is dropped.
    Unix(UnixListener, UnixSocketFile),
}

pub struct UnixSocketFile(PathBuf);

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Listener {
    /// `like`: a socket whose mode and owner the new unix socket copies (the daemon's own), so
    /// that whoever may use the daemon may use the proxy, and nobody else.
    pub async fn bind(addr: &ListenAddr, like: Option<&Path>) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(hp) => Ok(Listener::Tcp(TcpListener::bind(hp.as_str()).await?, None)),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let listener = UnixListener::bind(path)?;
                let guard = UnixSocketFile(path.clone());
                match like.and_then(|p| std::fs::metadata(p).ok()) {
                    Some(meta) => {
                        std::fs::set_permissions(
                            path,
                            std::fs::Permissions::from_mode(meta.mode() & 0o777),
                        )?;
                        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))?;
                    }
                    None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?,
                }
                Ok(Listener::Unix(listener, guard))
            }
        }
    }

    /// TLS for a tcp listener; a unix listener stays plain.
    pub fn with_tls(self, config: Arc<rustls::ServerConfig>) -> Listener {
        match self {
            Listener::Tcp(l, _) => Listener::Tcp(l, Some(TlsAcceptor::from(config))),
            unix => unix,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Listener::Tcp(_, Some(_)))
    }

    /// A plaintext tcp listener that other hosts can reach: whoever connects has root here.
    pub fn exposed_without_tls(&self) -> bool {
        match self {
            Listener::Tcp(l, None) => l.local_addr().is_ok_and(|a| !a.ip().is_loopback()),
            _ => false,
        }
    }

    /// The address actually bound (a tcp port 0 becomes the real port).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l, _) => l
                .local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_else(|_| "tcp://?".into()),
            Listener::Unix(_, f) => format!("unix://{}", f.0.display()),
        }
    }

    /// Takes the next connection. A TLS handshake is left to [`Accepted::establish`], in the
    /// connection's own task, so that a slow or silent client cannot hold up the accept loop.
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l, tls) => {
                let (s, peer) = l.accept().await?;
                // Interactive sessions (`run -ti`) send a byte at a time.
                let _ = s.set_nodelay(true);
                Ok(match tls {
                    Some(acceptor) => Accepted::Tls(s, peer, acceptor.clone()),
                    None => Accepted::Plain(Box::new(s)),
                })
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok(Accepted::Plain(Box::new(s)))
            }
        }
    }
}

/// A client gets this long to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection from [`Listener::accept`], ready to serve once established.
pub enum Accepted {
    Plain(BoxIo),
    Tls(TcpStream, SocketAddr, TlsAcceptor),
}

impl Accepted {
    /// The stream to serve HTTP on; for TLS, after the handshake (client certificate checked
    /// when the listener verifies). Plain HTTP sent to a TLS port gets dockerd's answer.
    pub async fn establish(self) -> std::io::Result<BoxIo> {
        let (tcp, peer, acceptor) = match self {
            Accepted::Plain(io) => return Ok(io),
            Accepted::Tls(tcp, peer, acceptor) => (tcp, peer, acceptor),
        };
        let handshake = async {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if crate::tls::looks_like_http(first[0]) {
                refuse_plain_http(tcp).await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "plain HTTP on a TLS listener",
                ));
            }
            acceptor.accept(tcp).await
        };
        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        };
        match result {
            Ok(tls) => Ok(Box::new(tls)),
            // A port probe (connect, close) is not worth a line.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(e),
            Err(e) => {
                // Refused clients (no certificate, another CA, plain HTTP) are worth a line: they
                // are either misconfigured or probing.
                tracing::info!("TLS connection from {peer} refused: {e}");
                Err(e)
            }
        }
    }
}

/// Answers as Go's server does, then lets the client read it: closing with its request still
/// unread would reset the connection and lose the answer.
async fn refuse_plain_http(mut tcp: TcpStream) {
    if tcp.write_all(crate::tls::PLAIN_HTTP_ANSWER).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A socket file left by a proxy that died is replaced; a live one is not stolen.
fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "tcp://0.0.0.0:12375".parse(),
            Ok(ListenAddr::Tcp("0.0.0.0:12375".into()))
        );
        assert_eq!(
            ":12375".parse(),
            Ok(ListenAddr::Tcp("0.0.0.0:12375".into()))
        );
        assert_eq!(
            "unix:///var/run/weave/weave.sock".parse(),
            Ok(ListenAddr::Unix("/var/run/weave/weave.sock".into()))
        );
        assert!("tcp://0.0.0.0".parse::<ListenAddr>().is_err());
        assert!("udp://0.0.0.0:1".parse::<ListenAddr>().is_err());
        assert!("unix://rel.sock".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn stale_socket_replaced_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let addr = ListenAddr::Unix(path.clone());
        let first = Listener::bind(&addr, None).await.unwrap();
        let err = Listener::bind(&addr, None).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(first);
        // A socket file that nobody listens on any more, as a killed proxy leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let second = Listener::bind(&addr, None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(second);
        assert!(!path.exists(), "socket removed on drop");
    }
}
