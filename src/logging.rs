//! Logs go to journald when it is there (a host service), else to stderr (so that
//! `docker logs weaveproxy` shows them when the proxy runs as a container).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

pub fn init(level: &str, target: &str) {
    let filter = EnvFilter::try_new(format!("{level},hyper=warn,bollard=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let want_journald = match target {
        "journald" => true,
        "stderr" => false,
        _ => {
            std::env::var_os("JOURNAL_STREAM").is_some()
                || std::path::Path::new("/run/systemd/journal/socket").exists()
        }
    };
    // layer() probes the socket, so a journald that is absent or refuses us falls back to stderr.
    let journald = want_journald
        .then(|| {
            tracing_journald::layer()
                .ok()
                .map(|l| l.with_syslog_identifier("weaveproxy".into()))
        })
        .flatten();
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}
