//! weaveDNS from a container: query throughput and latency.
//!
//! `cargo bench --bench dns` (root, a Docker daemon). weaveDNS (this crate's code, release
//! build) serves on the docker bridge's IP; the client runs in the network namespace of a
//! busybox container, so every query crosses the bridge as a container's would. The same
//! loop against a bare UDP echo at the same address gives the network's own cost, and the
//! ratio is weaveDNS's.
//!
//! Env: `DNS_BENCH_QUERIES` (default 20000, at least 10000), `DNS_BENCH_THREADS` (default 4).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

const NAMES: usize = 100;

fn main() {
    let queries: usize = std::env::var("DNS_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .max(10_000);
    let threads: usize = std::env::var("DNS_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    support::require_docker();
    let img = support::image();
    let mut cleanup = support::Cleanup::new();
    let name = cleanup.container("dnsbench");
    support::ok(support::docker(
        support::DIRECT,
        &["run", "-d", "--name", &name, img, "sleep", "600"],
    ));
    let pid: u32 = support::ok(support::docker(
        support::DIRECT,
        &["inspect", "-f", "{{.State.Pid}}", &name],
    ))
    .trim()
    .parse()
    .expect("pid");
    let bridge = support::docker_bridge_ip();
    let dns_addr = SocketAddr::from((bridge, free_udp_port(bridge)));
    let http_port = support::free_port();
    let opts = weaveproxy::dns::Options {
        domain: weaveproxy::dns::DEFAULT_DOMAIN.to_string(),
        listen: vec![dns_addr],
        upstream: vec![],
        http_addr: SocketAddr::from(([127, 0, 0, 1], http_port)),
        weave_cidr: None,
        bridge: "weave".into(),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            if let Err(e) =
                weaveproxy::dns::serve(opts, None, None, std::future::pending::<()>()).await
            {
                eprintln!("weavedns: {e:#}");
                std::process::exit(1);
            }
        });
    });
    wait_http(http_port);
    for i in 0..NAMES {
        register(http_port, i);
    }

    let echo = UdpSocket::bind((bridge, 0)).expect("echo socket");
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], peer);
        }
    });

    println!(
        "weaveDNS from a container: {queries} A queries per run, {NAMES} registered names, {threads} threads for the parallel run"
    );
    let seq = run(pid, dns_addr, queries, 1, true);
    let base = run(pid, echo_addr, queries, 1, false);
    let par = run(pid, dns_addr, queries, threads, true);
    let par_base = run(pid, echo_addr, queries, threads, false);
    report("weaveDNS, sequential", &seq);
    report("UDP echo, sequential", &base);
    report(&format!("weaveDNS, {threads} threads"), &par);
    report(&format!("UDP echo, {threads} threads"), &par_base);
    println!(
        "ratio weaveDNS/echo (sequential): p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
        seq.p50 / base.p50,
        seq.p99 / base.p99,
        seq.qps / base.qps
    );
}

struct Figures {
    qps: f64,
    p50: f64,
    p99: f64,
    lost: usize,
}

fn report(what: &str, f: &Figures) {
    println!(
        "{what:<28} {:>9.0} queries/s   p50 {:>7.1} µs   p99 {:>7.1} µs   lost {}",
        f.qps, f.p50, f.p99, f.lost
    );
}

fn free_udp_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "weaveDNS did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn register(port: u16, i: usize) {
    let form = format!("fqdn=bench{i}.weave.local");
    let mut raw = support::Raw::tcp(&format!("127.0.0.1:{port}"));
    raw.send(
        format!(
            "PUT /name/bench{i}/10.40.{}.{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            i / 250,
            i % 250 + 1,
            form.len()
        )
        .as_bytes(),
    );
    let (head, _) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
}

/// `queries` queries split over `threads` threads, each in the container's network namespace,
/// one outstanding query per thread.
fn run(pid: u32, server: SocketAddr, queries: usize, threads: usize, check: bool) -> Figures {
    let per = queries / threads;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                sock.connect(server).unwrap();
                let msgs: Vec<Vec<u8>> = (0..NAMES)
                    .map(|i| {
                        let mut m = Message::query();
                        m.metadata.id = (t * 10_000 + i) as u16;
                        m.metadata.recursion_desired = true;
                        m.add_query(Query::query(
                            Name::from_ascii(format!("bench{i}.weave.local.")).unwrap(),
                            RecordType::A,
                        ));
                        m.to_vec().unwrap()
                    })
                    .collect();
                let mut buf = [0u8; 4096];
                // Warm-up: caches, ARP, the server's first tasks.
                for m in msgs.iter().take(50) {
                    let _ = sock.send(m);
                    let _ = sock.recv(&mut buf);
                }
                let mut lat = Vec::with_capacity(per);
                let mut lost = 0;
                for q in 0..per {
                    let m = &msgs[q % NAMES];
                    let t0 = Instant::now();
                    sock.send(m).unwrap();
                    match sock.recv(&mut buf) {
                        Ok(n) => {
                            lat.push(t0.elapsed());
                            if check && q < NAMES {
                                let r = Message::from_vec(&buf[..n]).expect("a DNS reply");
                                assert_eq!(r.answers.len(), 1, "bench{} resolves", q % NAMES);
                            }
                        }
                        Err(_) => lost += 1,
                    }
                }
                (lat, lost)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(queries);
    let mut lost = 0;
    for h in handles {
        let (l, n) = h.join().expect("client thread");
        all.extend(l);
        lost += n;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1e6
    };
    Figures {
        qps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        lost,
    }
}
