//! Issue 3's benchmark and W-39: what joining the weave network adds to a container's start.
//!
//!   `docker run --rm -e WEAVE_CIDR=… IMG true` through the release proxy against
//!   `docker run --rm IMG true` straight at the daemon, interleaved; medians, p95, p99
//!   the attach step's p50/p99 as the proxy itself timed it (the `ms` of its "attached" lines)
//!   the image's, the proxy's and weavewait's sizes
//!
//! The proxy runs with its own network service (as after `weave launch`), so each explicit
//! address is also claimed there; each run claims a different one, so that a claim never
//! waits for the previous container's release.
//!
//! Run with scripts/bench (or `cargo bench --bench attach` after scripts/build-static all).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::path::Path;

use common::{Samples, Table, Target, ms, timed_docker};
use support::{Cleanup, DIRECT, docker, ok};

const RUNS: usize = 40;

fn main() {
    if !common::benchmarking() {
        return;
    }
    support::require_docker();
    let img = support::image();
    let weave = common::Weave::start("10.2.0.0/16");
    let proxy = &weave.proxy;
    let mut table = Table::new("docker run --rm through the proxy, attached, vs direct");

    // One of each first: the image's layers and the daemon's caches are warm for both.
    timed_docker(DIRECT, &["run", "--rm", img, "true"]);
    timed_docker(
        &proxy.tcp,
        &["run", "--rm", "-e", "WEAVE_CIDR=10.2.1.1/24", img, "true"],
    );
    let (direct, proxied) = common::interleave(
        RUNS,
        |_| ms(timed_docker(DIRECT, &["run", "--rm", img, "true"])),
        |i| {
            let cidr = format!("WEAVE_CIDR=10.2.0.{}/24", i + 1);
            ms(timed_docker(
                &proxy.tcp,
                &["run", "--rm", "-e", &cidr, img, "true"],
            ))
        },
    );
    let (d, p) = (Samples::new(direct), Samples::new(proxied));
    table.compare(
        &format!("`run --rm … true`, median of {RUNS}"),
        d.median(),
        p.median(),
        "ms",
        Target::RatioAtMost(1.10),
    );
    table.compare(
        "`run --rm … true`, p95",
        d.pct(95.0),
        p.pct(95.0),
        "ms",
        Target::None,
    );
    table.compare(
        "`run --rm … true`, p99",
        d.pct(99.0),
        p.pct(99.0),
        "ms",
        Target::None,
    );
    table.value(
        "added by the proxy, median (W-39: well under 250 ms)",
        p.median() - d.median(),
        "ms",
        Target::AtMost(250.0),
    );

    let attach = attach_times(&proxy.log_text());
    assert!(
        attach.len() >= RUNS,
        "expected {RUNS} attach timings in the proxy's log, found {}",
        attach.len()
    );
    let attach = Samples::new(attach);
    table.value(
        &format!(
            "attach step p50 (proxy's own timing, {} starts)",
            attach.len()
        ),
        attach.median(),
        "ms",
        Target::None,
    );
    table.value(
        "attach step p99",
        attach.pct(99.0),
        "ms",
        Target::AtMost(20.0),
    );

    let mut cleanup = Cleanup::new();
    let image = cleanup.image("product");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new("docker")
        .args(["-H", DIRECT, "build", "-q", "-f", "image/Dockerfile"])
        .args(["--target", "local", "-t", &image, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(root)
        .output()
        .expect("docker build");
    assert!(built.status.success(), "building the product image");
    let size: f64 = ok(docker(
        DIRECT,
        &["image", "inspect", "--format", "{{.Size}}", &image],
    ))
    .trim()
    .parse()
    .expect("image size");
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    table.value(
        "product image (FROM scratch)",
        mib(size),
        "MiB",
        Target::None,
    );
    table.value(
        "weaveproxy binary (static)",
        mib(common::file_size(&support::release_binary()) as f64),
        "MiB",
        Target::None,
    );
    table.value(
        "weavewait binary (static)",
        mib(common::file_size(&support::weavewait()) as f64),
        "MiB",
        Target::None,
    );
    let missed = table.print();
    println!("{missed} target(s) missed");
}

/// The `ms` of every "attached" line. A start is attached once, by its start request or by
/// the event watcher, whichever comes first; the other finds the interface there already and
/// logs that only at debug level, so each container has one line: its attach step.
fn attach_times(log: &str) -> Vec<f64> {
    let mut per_container: std::collections::HashMap<&str, f64> = Default::default();
    for line in log.lines().filter(|l| l.contains(" attached")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_matches('"'))
        };
        let (Some(id), Some(ms)) = (
            field("container="),
            field("ms=").and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let slot = per_container.entry(id).or_insert(0.0);
        *slot = slot.max(ms);
    }
    per_container.into_values().collect()
}
