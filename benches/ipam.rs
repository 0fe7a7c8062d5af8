//! Issue 4's benchmark: the network service's IPAM round trips, and the churn of 50
//! sequential `docker run --rm` in a /28 (14 addresses), each of which needs the address of a
//! container destroyed just before.
//!
//! Round trips go through the proxy's own client (`RouterClient`: one connection per request,
//! as the proxy makes them) to the release binary's service; every change is on disk (fsync)
//! before the service answers.
//!
//! Run with scripts/bench (or `cargo bench --bench ipam` after scripts/build-static all).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::Instant;

use common::{Samples, Table, Target, ms, timed_docker};
use support::DIRECT;
use weaveproxy::router_api::RouterClient;
use weaveproxy::weave_cidr::Cidr;

const ROUND_TRIPS: usize = 1_000;
const CHURN_RUNS: usize = 50;

fn main() {
    if !common::benchmarking() {
        return;
    }
    support::require_docker();
    let img = support::image();
    let weave = common::Weave::start("10.48.0.0/16");
    let mut table = Table::new("IPAM of the network service");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = RouterClient::new(&weave.service.api()).expect("client");
    let (alloc, claim, release) = rt.block_on(round_trips(&client));
    for (what, s) in [
        ("allocate (`POST /ip/{id}`)", alloc),
        ("claim (`PUT /ip/{id}/{ip}/{len}`)", claim),
        ("release (`DELETE /ip/{id}`)", release),
    ] {
        table.value(
            &format!("{what} p50, {} round trips", s.len()),
            s.median(),
            "ms",
            Target::None,
        );
        table.value(&format!("{what} p99"), s.pct(99.0), "ms", Target::None);
    }

    // Warm both paths once, then interleave: the direct runs are the same start without the
    // proxy, address or attach.
    timed_docker(DIRECT, &["run", "--rm", img, "true"]);
    let churn = [
        "run",
        "--rm",
        "-e",
        "WEAVE_CIDR=net:10.48.2.0/28",
        img,
        "true",
    ];
    let (direct, proxied) = common::interleave(
        CHURN_RUNS,
        |_| ms(timed_docker(DIRECT, &["run", "--rm", img, "true"])),
        |_| ms(timed_docker(&weave.proxy.tcp, &churn)),
    );
    let total = |v: &[f64]| v.iter().sum::<f64>() / 1000.0;
    table.compare(
        &format!("{CHURN_RUNS}-run churn in a /28, total"),
        total(&direct),
        total(&proxied),
        "s",
        Target::None,
    );
    let (d, p) = (Samples::new(direct), Samples::new(proxied));
    table.compare(
        "churn, median run",
        d.median(),
        p.median(),
        "ms",
        Target::None,
    );
    let missed = table.print();
    println!("{missed} target(s) missed");
}

/// Allocations for `ROUND_TRIPS` made-up containers, a claim for as many more, then the
/// release of them all; each timed in milliseconds.
async fn round_trips(client: &RouterClient) -> (Samples, Samples, Samples) {
    let id = |n: usize| format!("{:032x}{n:032x}", std::process::id());
    let (mut alloc, mut claim, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..ROUND_TRIPS {
        let t = Instant::now();
        client.allocate(&id(n), None).await.expect("allocate");
        alloc.push(ms(t.elapsed()));
    }
    for n in 0..ROUND_TRIPS {
        let cidr: Cidr = format!("10.48.{}.{}/16", 200 + n / 250, 1 + n % 250)
            .parse()
            .expect("cidr");
        let t = Instant::now();
        client
            .claim(&id(ROUND_TRIPS + n), cidr)
            .await
            .expect("claim");
        claim.push(ms(t.elapsed()));
    }
    for n in 0..2 * ROUND_TRIPS {
        let t = Instant::now();
        client.release(&id(n)).await.expect("release");
        release.push(ms(t.elapsed()));
    }
    (
        Samples::new(alloc),
        Samples::new(claim),
        Samples::new(release),
    )
}
