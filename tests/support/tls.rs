//! TLS fixtures, for tests/tls.rs and benches/tls.rs (included with `#[path]`): certificate
//! authorities and certificates made in the test, the docker CLI with TLS flags, and a TLS front
//! for the machine's dockerd, which makes it a daemon that can be reached only with TLS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA's PEM file, and a certificate with its key signed by it.
#[derive(Debug, Clone)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// The docker CLI's flags for these files, verifying the server against the CA.
    pub fn cli_flags(&self) -> Vec<String> {
        vec![
            "--tlsverify".into(),
            format!("--tlscacert={}", self.ca.display()),
            format!("--tlscert={}", self.cert.display()),
            format!("--tlskey={}", self.key.display()),
        ]
    }

    /// The proxy's listener flags for these files.
    pub fn proxy_flags(&self) -> Vec<String> {
        vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            self.ca.display().to_string(),
            "--tlscert".into(),
            self.cert.display().to_string(),
            "--tlskey".into(),
            self.key.display().to_string(),
        ]
    }

    /// The proxy's flags to reach a TLS daemon at `addr` (host:port) with these files.
    pub fn daemon_flags(&self, addr: &str) -> Vec<String> {
        vec![
            "-D".into(),
            format!("tcp://{addr}"),
            "--docker-tlsverify".into(),
            format!("--docker-tlscacert={}", self.ca.display()),
            format!("--docker-tlscert={}", self.cert.display()),
            format!("--docker-tlskey={}", self.key.display()),
        ]
    }

    /// Copies the files to `dir` as `ca.pem`, `cert.pem` and `key.pem`, the names the docker
    /// CLI and dockerd look for.
    pub fn install(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(&self.ca, dir.join("ca.pem")).unwrap();
        std::fs::copy(&self.cert, dir.join("cert.pem")).unwrap();
        std::fs::copy(&self.key, dir.join("key.pem")).unwrap();
    }
}

/// A certificate authority whose files live in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Files {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = Files {
            ca: self.ca.clone(),
            cert: self.dir.path().join(format!("{name}-cert.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A server certificate for this machine's loopback names.
    pub fn server(&self, name: &str) -> Files {
        self.issue(
            name,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub fn client(&self, name: &str) -> Files {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The docker CLI at `host` with TLS `flags` in front of `args`.
pub fn docker_tls_cmd(host: &str, flags: &[String], args: &[&str]) -> Command {
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    crate::support::docker_cmd(host, &all)
}

pub fn docker_tls(host: &str, files: &Files, args: &[&str]) -> crate::support::Out {
    docker_tls_cmd(host, &files.cli_flags(), args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker")
        .into()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(
    files: &Files,
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
    (certs, key)
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(roots)
}

/// A rustls client config presenting `files`' certificate and trusting its CA (`None`: no
/// client certificate).
pub fn client_config(ca: &Path, files: Option<&Files>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca));
    Arc::new(match files {
        Some(f) => {
            let (certs, key) = load(f);
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

/// The machine's dockerd behind TLS on a loopback port: a client must present a certificate
/// signed by `client_ca`, and each connection is relayed to /var/run/docker.sock (half-closes
/// included, as a hijacked stream needs). Stopped on drop.
pub struct TlsDaemon {
    pub addr: String,
    handshakes: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsDaemon {
    pub fn start(server: &Files, client_ca: &Path) -> TlsDaemon {
        let (certs, key) = load(server);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots(client_ca),
            provider(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let counter = handshakes.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stop_rx => break,
                        r = listener.accept() => match r {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        let Ok(mut unix) =
                            tokio::net::UnixStream::connect("/var/run/docker.sock").await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                    });
                }
            });
            // Dropping the runtime ends the relays still open.
        });
        TlsDaemon {
            addr,
            handshakes,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Connections that completed the TLS handshake (with a valid client certificate).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
