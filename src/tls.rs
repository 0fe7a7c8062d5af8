//! TLS, with dockerd's meaning: the listener side (`--tls` encrypts, `--tlsverify` also requires
//! a client certificate signed by the CA) and the daemon side (`--docker-tlsverify`: reach a
//! TLS-only daemon, checking its certificate and presenting ours).
//!
//! Every config is built with an explicit ring provider, never the process default, so feature
//! unification elsewhere in the tree cannot make the choice ambiguous. TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

/// The three files, as dockerd names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// dockerd's defaults: `ca.pem`, `cert.pem` and `key.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Where dockerd and the docker CLI look when no file is named: `DOCKER_CERT_PATH`, else
/// `~/.docker`.
pub fn default_dir(docker_cert_path: Option<&str>, home: Option<&str>) -> PathBuf {
    match docker_cert_path.filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(home.filter(|h| !h.is_empty()).unwrap_or("/")).join(".docker"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} {}: {reason}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS: {0}")]
    Config(#[from] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let parse = |reason: String| TlsError::Parse {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(e.to_string()))?;
    if certs.is_empty() {
        return Err(parse("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Parse {
        what: "key",
        path: path.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => e.to_string(),
        },
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs("CA certificate", path)? {
        store.add(cert).map_err(|e| TlsError::Parse {
            what: "CA certificate",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(store))
}

/// rustls checks that a key matches its certificate; its error is named after our files.
fn pair_error(files: &Files, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        e => TlsError::Parse {
            what: "key",
            path: files.key.clone(),
            reason: e.to_string(),
        },
    }
}

/// The listener's config. `verify`: require a client certificate signed by `files.ca` (the CA
/// is not read otherwise, as dockerd does with `--tls` alone).
pub fn server_config(files: &Files, verify: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let chain = certs("certificate", &files.cert)?;
    let key = key(&files.key)?;
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(VERSIONS)?;
    let builder = if verify {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots(&files.ca)?,
            provider,
        )
        .build()
        .map_err(|e| TlsError::Parse {
            what: "CA certificate",
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| pair_error(files, e))?;
    // The Docker API is HTTP/1.1; a client that offers h2 as well gets what it can use.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Towards a daemon run with `--tlsverify`: its certificate must chain to `files.ca`, and ours
/// is presented.
pub fn client_config(files: &Files) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots(&files.ca)?;
    let chain = certs("certificate", &files.cert)?;
    let key = key(&files.key)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| pair_error(files, e))?;
    Ok(Arc::new(config))
}

/// A TLS connection always opens with a handshake record (content type 22, or 0x80 for an old
/// SSLv2-style hello); an HTTP request opens with its method, in capitals.
pub fn looks_like_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// What Go's server (so dockerd) answers plain HTTP on a TLS port; the docker CLI shows it.
pub const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_like_docker() {
        assert_eq!(
            default_dir(Some("/certs"), Some("/home/u")),
            PathBuf::from("/certs")
        );
        assert_eq!(
            default_dir(None, Some("/home/u")),
            PathBuf::from("/home/u/.docker")
        );
        assert_eq!(
            default_dir(Some(""), Some("/home/u")),
            PathBuf::from("/home/u/.docker")
        );
        assert_eq!(default_dir(None, None), PathBuf::from("/.docker"));
        assert_eq!(
            Files::in_dir(Path::new("/d")).key,
            PathBuf::from("/d/key.pem")
        );
    }

    #[test]
    fn plain_http_is_told_from_a_hello() {
        for m in ["GET /", "HEAD ", "POST ", "PUT /", "OPTIONS"] {
            assert!(looks_like_http(m.as_bytes()[0]), "{m}");
        }
        assert!(!looks_like_http(0x16));
        assert!(!looks_like_http(0x80));
    }

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::in_dir(dir.path());
        let err = server_config(&files, false).unwrap_err().to_string();
        assert!(
            err.contains("cert.pem") && err.contains("No such file"),
            "{err}"
        );
        std::fs::write(&files.cert, "not pem").unwrap();
        let err = server_config(&files, false).unwrap_err().to_string();
        assert!(
            err.contains("cert.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = client_config(&files).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
    }

    fn write_pair(dir: &Path) -> Files {
        let files = Files::in_dir(dir);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.ca, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (fa, fb) = (write_pair(a.path()), write_pair(b.path()));
        assert!(server_config(&fa, true).is_ok());
        assert!(client_config(&fa).is_ok());
        let mixed = Files {
            key: fb.key.clone(),
            ..fa.clone()
        };
        for err in [
            server_config(&mixed, false).unwrap_err(),
            client_config(&mixed).unwrap_err(),
        ] {
            assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&*fb.key.to_string_lossy()), "{msg}");
        }
        // A certificate where the key belongs is no key.
        let swapped = Files {
            key: fa.cert.clone(),
            ..fa
        };
        let msg = server_config(&swapped, false).unwrap_err().to_string();
        assert!(msg.contains("no PEM private key"), "{msg}");
    }
}
