//! Settings: defaults < TOML file < `WEAVEPROXY_*` environment < command-line flags.
//!
//! Every layer goes through one `config::Config`, and the result is deserialised with
//! `deny_unknown_fields`, so a misspelt key in the file or the environment is a start-up error
//! rather than a silently ignored setting.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "tcp://0.0.0.0:12375";
pub const DEFAULT_DOCKER: &str = "unix:///var/run/docker.sock";

/// Command-line flags. Every setting is an `Option` without a clap default, so an absent flag
/// never overrides the file or the environment.
#[derive(Debug, Parser)]
#[command(
    name = "weaveproxy",
    version,
    about = "Docker API proxy that attaches containers to the weave network"
)]
pub struct Cli {
    /// Address to listen on: tcp://HOST:PORT or unix:///PATH (repeatable) [default: tcp://0.0.0.0:12375]
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Docker daemon address: unix:///PATH or tcp://HOST:PORT [default: unix:///var/run/docker.sock]
    #[arg(short = 'D', long = "docker", value_name = "ADDR")]
    pub docker_host: Option<String>,
    /// TOML file with settings (keys as in the README's table)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Where logs go: auto (journald when present, else stderr), journald or stderr [default: auto]
    #[arg(long, value_name = "TARGET")]
    pub log_target: Option<String>,
    /// Attach every container, allocating an address, unless it says WEAVE_CIDR=none
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub with_ipam: Option<bool>,
    /// Always point containers' resolvers at weaveDNS
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub with_dns: Option<bool>,
    /// Never touch containers' resolvers or register them in weaveDNS
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub without_dns: Option<bool>,
    /// Host path of the weavewait binary, or volume:NAME for a volume holding it as /w
    #[arg(long, value_name = "PATH")]
    pub weavewait: Option<String>,
    /// Bridge that weave interfaces are attached to [default: weave]
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// The weave router (or our network service) HTTP API [default: http://127.0.0.1:6784]
    #[arg(long, value_name = "URL")]
    pub weave_api: Option<String>,
    /// weaveDNS's HTTP API [default: http://127.0.0.1:6785]
    #[arg(long, value_name = "URL")]
    pub dns_api: Option<String>,
    /// The resolver address containers get for weaveDNS [default: the docker bridge's IP]
    #[arg(long, value_name = "IP")]
    pub dns_address: Option<String>,
    /// Leave containers' /etc/hosts as Docker wrote it (by default their weave addresses go in)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub no_rewrite_hosts: Option<bool>,
    /// Seconds that in-flight requests get to finish on SIGTERM/SIGINT [default: 10]
    #[arg(long, value_name = "SECS")]
    pub shutdown_timeout: Option<u64>,
    /// Threads that serve connections [default: 2, or 1 on a single core]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Use TLS on every tcp listener (unix listeners stay plain); implied by --tlsverify
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tls: Option<bool>,
    /// Use TLS and require a client certificate signed by --tlscacert
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tlsverify: Option<bool>,
    /// CA that client certificates must chain to [default: $DOCKER_CERT_PATH/ca.pem, else ~/.docker/ca.pem]
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<String>,
    /// The listener's certificate [default: $DOCKER_CERT_PATH/cert.pem, else ~/.docker/cert.pem]
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<String>,
    /// The listener's private key [default: $DOCKER_CERT_PATH/key.pem, else ~/.docker/key.pem]
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<String>,
    /// Reach the daemon (-D tcp://HOST:PORT) over TLS, verifying its certificate against --docker-tlscacert
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub docker_tlsverify: Option<bool>,
    /// CA the daemon's certificate must chain to [default: as --tlscacert]
    #[arg(long, value_name = "FILE")]
    pub docker_tlscacert: Option<String>,
    /// Client certificate presented to the daemon [default: as --tlscert]
    #[arg(long, value_name = "FILE")]
    pub docker_tlscert: Option<String>,
    /// Key of the client certificate presented to the daemon [default: as --tlskey]
    #[arg(long, value_name = "FILE")]
    pub docker_tlskey: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    pub docker_host: String,
    pub log_level: String,
    pub log_target: String,
    pub with_ipam: bool,
    pub with_dns: bool,
    pub without_dns: bool,
    /// Empty: `weavewait` next to the proxy's own executable.
    pub weavewait: String,
    pub bridge: String,
    pub weave_api: String,
    pub dns_api: String,
    /// Empty: the docker bridge's gateway IP, asked from the daemon.
    pub dns_address: String,
    pub no_rewrite_hosts: bool,
    pub shutdown_timeout: u64,
    /// Two by default, where there are two cores: the two directions of a hijacked stream then
    /// run at the same time. More cost CPU per byte streamed (workers wake each other for
    /// every event) and pay only once two cores are saturated.
    pub workers: usize,
    pub tls: bool,
    pub tlsverify: bool,
    /// Empty until `load` fills in the default; left empty when TLS is off.
    pub tlscacert: String,
    pub tlscert: String,
    pub tlskey: String,
    pub docker_tlsverify: bool,
    pub docker_tlscacert: String,
    pub docker_tlscert: String,
    pub docker_tlskey: String,
}

/// The listener's TLS: every tcp listener gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    pub files: crate::tls::Files,
    /// Require a client certificate signed by the CA (`--tlsverify`).
    pub verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Environment variables that belong to the `weave` front end, not to the proxy.
const FOREIGN_ENV: &[&str] = &["WEAVEPROXY_DOCKER_ARGS"];

pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
    load_from(cli, std::env::vars())
}

pub fn load_from(
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    use config::{Config, Environment, File, FileFormat};

    let env: Vec<(String, String)> = env.into_iter().collect();
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let cert_dir = crate::tls::default_dir(
        var("DOCKER_CERT_PATH").as_deref(),
        var("HOME").or_else(home_of_user).as_deref(),
    );
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("WEAVEPROXY_") && !FOREIGN_ENV.contains(&k.as_str()))
        .collect();

    let mut builder = Config::builder()
        .set_default("listen", vec![DEFAULT_LISTEN])?
        .set_default("docker_host", DEFAULT_DOCKER)?
        .set_default("log_level", "info")?
        .set_default("log_target", "auto")?
        .set_default("with_ipam", false)?
        .set_default("with_dns", false)?
        .set_default("without_dns", false)?
        .set_default("weavewait", "")?
        .set_default("bridge", "weave")?
        .set_default("weave_api", "http://127.0.0.1:6784")?
        .set_default("dns_api", crate::dns_api::DEFAULT_BASE_URL)?
        .set_default("dns_address", "")?
        .set_default("no_rewrite_hosts", false)?
        .set_default("shutdown_timeout", 10)?
        .set_default("workers", default_workers())?;
    for (key, default) in BOOL_OFF {
        builder = builder.set_default(*key, *default)?;
    }
    for key in TLS_FILES {
        builder = builder.set_default(*key, "")?;
    }
    if let Some(path) = &cli.config {
        if !path.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
    }
    builder = builder.add_source(
        Environment::with_prefix("WEAVEPROXY")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("listen")
            .try_parsing(true)
            .source(Some(env)),
    );
    if !cli.listen.is_empty() {
        builder = builder.set_override("listen", cli.listen.clone())?;
    }
    builder = builder
        .set_override_option("docker_host", cli.docker_host.clone())?
        .set_override_option("log_level", cli.log_level.clone())?
        .set_override_option("log_target", cli.log_target.clone())?
        .set_override_option("with_ipam", cli.with_ipam)?
        .set_override_option("with_dns", cli.with_dns)?
        .set_override_option("without_dns", cli.without_dns)?
        .set_override_option("weavewait", cli.weavewait.clone())?
        .set_override_option("bridge", cli.bridge.clone())?
        .set_override_option("weave_api", cli.weave_api.clone())?
        .set_override_option("dns_api", cli.dns_api.clone())?
        .set_override_option("dns_address", cli.dns_address.clone())?
        .set_override_option("no_rewrite_hosts", cli.no_rewrite_hosts)?
        .set_override_option("shutdown_timeout", cli.shutdown_timeout)?
        .set_override_option("tls", cli.tls)?
        .set_override_option("tlsverify", cli.tlsverify)?
        .set_override_option("tlscacert", cli.tlscacert.clone())?
        .set_override_option("tlscert", cli.tlscert.clone())?
        .set_override_option("tlskey", cli.tlskey.clone())?
        .set_override_option("docker_tlsverify", cli.docker_tlsverify)?
        .set_override_option("docker_tlscacert", cli.docker_tlscacert.clone())?
        .set_override_option("docker_tlscert", cli.docker_tlscert.clone())?
        .set_override_option("docker_tlskey", cli.docker_tlskey.clone())?
        .set_override_option("workers", cli.workers.map(|n| n as u64))?;

    let mut settings: Settings = builder.build()?.try_deserialize()?;
    settings.validate()?;
    settings.fill_tls_defaults(&cert_dir);
    Ok(settings)
}

const BOOL_OFF: &[(&str, bool)] = &[
    ("tls", false),
    ("tlsverify", false),
    ("docker_tlsverify", false),
];
const TLS_FILES: &[&str] = &[
    "tlscacert",
    "tlscert",
    "tlskey",
    "docker_tlscacert",
    "docker_tlscert",
    "docker_tlskey",
];

/// `listen = "tcp://..."` in the file means what `listen = ["tcp://..."]` does.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Like Go's os/user fallback when HOME is unset (a container started without it).
fn home_of_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir.to_string_lossy().into_owned())
}

fn default_workers() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2) as u64)
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.listen.is_empty() {
            return bad("at least one listen address (-H) is needed".into());
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return bad(format!(
                "log_level \"{}\" is not one of error, warn, info, debug, trace",
                self.log_level
            ));
        }
        if !["auto", "journald", "stderr"].contains(&self.log_target.as_str()) {
            return bad(format!(
                "log_target \"{}\" is not one of auto, journald, stderr",
                self.log_target
            ));
        }
        if self.with_dns && self.without_dns {
            return bad("--with-dns and --without-dns contradict each other".into());
        }
        for (key, url) in [("weave_api", &self.weave_api), ("dns_api", &self.dns_api)] {
            if crate::router_api::RouterClient::new(url).is_err() {
                return bad(format!(
                    "{key} \"{url}\" is not an address like http://HOST:PORT or HOST:PORT"
                ));
            }
        }
        if !(1..=256).contains(&self.workers) {
            return bad(format!("workers {} is not between 1 and 256", self.workers));
        }
        if !self.dns_address.is_empty() && self.dns_address.parse::<std::net::Ipv4Addr>().is_err() {
            return bad(format!(
                "dns_address \"{}\" is not an IPv4 address",
                self.dns_address
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 {
            return bad(format!(
                "bridge name \"{}\" must be 1 to 15 characters",
                self.bridge
            ));
        }
        // A file named without the switch that uses it would leave the port in plaintext while
        // its owner believes it is encrypted.
        let listen_files = [
            ("--tlscacert", &self.tlscacert),
            ("--tlscert", &self.tlscert),
            ("--tlskey", &self.tlskey),
        ];
        if !self.tls
            && !self.tlsverify
            && let Some((flag, _)) = listen_files.iter().find(|(_, v)| !v.is_empty())
        {
            return bad(format!(
                "{flag} is set but neither --tls nor --tlsverify: refusing to listen without TLS"
            ));
        }
        let daemon_files = [
            ("--docker-tlscacert", &self.docker_tlscacert),
            ("--docker-tlscert", &self.docker_tlscert),
            ("--docker-tlskey", &self.docker_tlskey),
        ];
        if !self.docker_tlsverify {
            if let Some((flag, _)) = daemon_files.iter().find(|(_, v)| !v.is_empty()) {
                return bad(format!("{flag} is set but --docker-tlsverify is not"));
            }
        } else if !self.docker_host.starts_with("tcp://") {
            return bad(format!(
                "--docker-tlsverify needs a tcp://HOST:PORT daemon address, not {}",
                self.docker_host
            ));
        }
        Ok(())
    }

    /// Files left unnamed get dockerd's defaults, for the sides that use TLS.
    fn fill_tls_defaults(&mut self, dir: &std::path::Path) {
        let d = crate::tls::Files::in_dir(dir);
        let fill = |v: &mut String, p: &std::path::Path| {
            if v.is_empty() {
                *v = p.display().to_string();
            }
        };
        if self.tls || self.tlsverify {
            fill(&mut self.tlscacert, &d.ca);
            fill(&mut self.tlscert, &d.cert);
            fill(&mut self.tlskey, &d.key);
        }
        if self.docker_tlsverify {
            fill(&mut self.docker_tlscacert, &d.ca);
            fill(&mut self.docker_tlscert, &d.cert);
            fill(&mut self.docker_tlskey, &d.key);
        }
    }

    /// `None`: tcp listeners are plain.
    pub fn listen_tls(&self) -> Option<ListenTls> {
        (self.tls || self.tlsverify).then(|| ListenTls {
            files: crate::tls::Files {
                ca: self.tlscacert.clone().into(),
                cert: self.tlscert.clone().into(),
                key: self.tlskey.clone().into(),
            },
            verify: self.tlsverify,
        })
    }

    /// `None`: the daemon is reached without TLS.
    pub fn daemon_tls(&self) -> Option<crate::tls::Files> {
        self.docker_tlsverify.then(|| crate::tls::Files {
            ca: self.docker_tlscacert.clone().into(),
            cert: self.docker_tlscert.clone().into(),
            key: self.docker_tlskey.clone().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weaveproxy").chain(args.iter().copied())).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = load_from(&cli(&[]), env(&[])).unwrap();
        assert_eq!(s.listen, vec![DEFAULT_LISTEN]);
        assert_eq!(s.docker_host, DEFAULT_DOCKER);
        assert!(!s.with_ipam);
        assert_eq!(s.bridge, "weave");
        assert_eq!(s.dns_api, "http://127.0.0.1:6785");
        assert_eq!(s.dns_address, "");
        assert!(!s.no_rewrite_hosts && !s.with_dns && !s.without_dns);
        let s = load_from(
            &cli(&["--no-rewrite-hosts", "--dns-address", "10.9.0.1"]),
            env(&[("WEAVEPROXY_DNS_API", "http://127.0.0.1:6784")]),
        )
        .unwrap();
        assert!(s.no_rewrite_hosts);
        assert_eq!(s.dns_address, "10.9.0.1");
        assert_eq!(s.dns_api, "http://127.0.0.1:6784");
        assert_eq!(s.workers as u64, default_workers());
        let s = load_from(&cli(&[]), env(&[("WEAVEPROXY_WORKERS", "4")])).unwrap();
        assert_eq!(s.workers, 4);
    }

    #[test]
    fn listen_in_the_file_may_be_one_string() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "listen = \"tcp://127.0.0.1:2\"").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let s = load_from(&cli(&["--config", &path]), env(&[])).unwrap();
        assert_eq!(s.listen, vec!["tcp://127.0.0.1:2"]);
        let s = load_from(
            &cli(&["--config", &path]),
            env(&[("WEAVEPROXY_LISTEN", "tcp://127.0.0.1:3,unix:///x.sock")]),
        )
        .unwrap();
        assert_eq!(s.listen, vec!["tcp://127.0.0.1:3", "unix:///x.sock"]);
    }

    #[test]
    fn layers_in_order() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "listen = [\"tcp://127.0.0.1:1\"]\ndocker_host = \"unix:///file.sock\"\nlog_level = \"warn\"\nbridge = \"fromfile\""
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let s = load_from(
            &cli(&["--config", &path, "-D", "unix:///flag.sock"]),
            env(&[
                ("WEAVEPROXY_LOG_LEVEL", "debug"),
                ("WEAVEPROXY_DOCKER_HOST", "unix:///env.sock"),
                ("WEAVEPROXY_WITH_IPAM", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen, vec!["tcp://127.0.0.1:1"]);
        assert_eq!(s.bridge, "fromfile");
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.docker_host, "unix:///flag.sock");
        assert!(s.with_ipam);
    }

    #[test]
    fn repeated_listen_flags_and_env_list() {
        let s = load_from(
            &cli(&["-H", "tcp://127.0.0.1:1", "-H", "unix:///a.sock"]),
            env(&[]),
        )
        .unwrap();
        assert_eq!(s.listen, vec!["tcp://127.0.0.1:1", "unix:///a.sock"]);
        let s = load_from(
            &cli(&[]),
            env(&[("WEAVEPROXY_LISTEN", "tcp://127.0.0.1:1,unix:///b.sock")]),
        )
        .unwrap();
        assert_eq!(s.listen, vec!["tcp://127.0.0.1:1", "unix:///b.sock"]);
    }

    #[test]
    fn misspelt_keys_are_errors() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "dockr_host = \"x\"").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let err = load_from(&cli(&["--config", &path]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("dockr_host"), "{err}");

        let err = load_from(&cli(&[]), env(&[("WEAVEPROXY_WITH_IPAMM", "1")])).unwrap_err();
        assert!(err.to_string().contains("with_ipamm"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        let err = load_from(&cli(&[]), env(&[("WEAVEPROXY_WITH_IPAM", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("with_ipam"), "{err}");
        let err = load_from(&cli(&["--log-level", "loud"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("loud"), "{err}");
        let err = load_from(&cli(&["--with-dns", "--without-dns"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("contradict"), "{err}");
        let err = load_from(&cli(&["--workers", "0"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("workers"), "{err}");
        let err = load_from(&cli(&["--dns-address", "weave"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("dns_address"), "{err}");
        let err = load_from(&cli(&["--weave-api", "notaurl"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("weave_api \"notaurl\""), "{err}");
        let err = load_from(&cli(&["--dns-api", "https://x:1"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("dns_api"), "{err}");
        let err = load_from(&cli(&["--config", "/nonexistent.toml"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent.toml"), "{err}");
    }

    #[test]
    fn tls_files_default_like_dockerd() {
        let s = load_from(&cli(&["--tlsverify"]), env(&[("HOME", "/home/u")])).unwrap();
        let t = s.listen_tls().unwrap();
        assert!(t.verify);
        assert_eq!(
            t.files,
            crate::tls::Files::in_dir("/home/u/.docker".as_ref())
        );
        let s = load_from(
            &cli(&["--tls", "--tlskey", "/k.pem"]),
            env(&[("HOME", "/home/u"), ("DOCKER_CERT_PATH", "/certs")]),
        )
        .unwrap();
        let t = s.listen_tls().unwrap();
        assert!(!t.verify);
        assert_eq!(t.files.cert, std::path::PathBuf::from("/certs/cert.pem"));
        assert_eq!(t.files.key, std::path::PathBuf::from("/k.pem"));
        assert_eq!(s.daemon_tls(), None);
        let s = load_from(&cli(&[]), env(&[("DOCKER_CERT_PATH", "/certs")])).unwrap();
        assert_eq!(s.listen_tls(), None);
        assert_eq!(s.tlscert, "");
        let s = load_from(
            &cli(&["--tlsverify=false", "--tls=false"]),
            env(&[("WEAVEPROXY_TLSVERIFY", "true")]),
        )
        .unwrap();
        assert_eq!(s.listen_tls(), None);
    }

    #[test]
    fn daemon_tls_settings() {
        let s = load_from(
            &cli(&[
                "-D",
                "tcp://10.0.0.1:2376",
                "--docker-tlsverify",
                "--docker-tlscacert",
                "/d/ca.pem",
            ]),
            env(&[("DOCKER_CERT_PATH", "/certs")]),
        )
        .unwrap();
        let f = s.daemon_tls().unwrap();
        assert_eq!(f.ca, std::path::PathBuf::from("/d/ca.pem"));
        assert_eq!(f.cert, std::path::PathBuf::from("/certs/cert.pem"));
        assert_eq!(s.listen_tls(), None);
    }

    #[test]
    fn tls_files_without_their_switch_are_errors() {
        let err = load_from(&cli(&["--tlscert", "/c.pem"]), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("--tlscert is set but neither"),
            "{err}"
        );
        let err = load_from(&cli(&["--docker-tlskey", "/k.pem"]), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("--docker-tlsverify is not"),
            "{err}"
        );
        let err = load_from(&cli(&["--docker-tlsverify"]), env(&[])).unwrap_err();
        assert!(err.to_string().contains("needs a tcp://"), "{err}");
    }

    #[test]
    fn front_end_variables_are_not_ours() {
        let s = load_from(&cli(&[]), env(&[("WEAVEPROXY_DOCKER_ARGS", "--foo")])).unwrap();
        assert_eq!(s.docker_host, DEFAULT_DOCKER);
    }
}
