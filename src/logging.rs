//! Logs go to journald when it is there (a host service), else to stderr (so that
//! `docker logs weaveproxy` shows them when the proxy runs as a container).

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

pub fn init(level: &str, target: &str) {
    // Per-target levels are all the filtering needed; EnvFilter's directive language would bring
    // a regex engine (~0.5 MB of the static binary) along.
    let level: LevelFilter = level.parse().unwrap_or(LevelFilter::INFO);
    let filter = Targets::new()
        .with_default(level)
        .with_target("hyper", LevelFilter::WARN)
        .with_target("bollard", LevelFilter::WARN);
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
