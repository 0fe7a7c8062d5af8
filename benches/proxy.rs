//! Issue 2's benchmark: the release proxy against the daemon's own socket, in one run, each
//! measurement interleaved between the two so that drift on a shared machine hits both alike.
//!
//!   latency of `GET /_ping` and `GET /containers/json` on keep-alive connections
//!   throughput of a 1 GiB response stream (a container's export)
//!   throughput of a hijacked exec stream (256 MiB through stdin and back)
//!   `docker build` with a 1 GiB context (moby/moby#35391)
//!   the proxy's resident memory idle and with 1,000 idle hijacked connections
//!
//! Run with scripts/bench (or `cargo bench --bench proxy [SECTION...]` after
//! scripts/build-static all); sections: latency, export, exec, build, memory.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use common::{Conn, Endpoint, Samples, Table, Target, rss_mib};
use support::{Cleanup, DIRECT, ProxyProc, docker, docker_cmd, ok};

const LATENCY_REQUESTS: usize = 5_000;
const WARMUP: usize = 300;
const EXPORT_BYTES: u64 = 1 << 30;
const EXEC_BYTES: u64 = 256 << 20;
const BUILD_CONTEXT: u64 = 1 << 30;
const HIJACKS: usize = 1_000;
/// What passes through each hijacked connection (each way) before it goes idle: enough to fill
/// any buffer the proxy has for it.
const ATTACH_OUTPUT: u64 = 256 << 10;
const ATTACH_INPUT: usize = 64 << 10;
/// Each throughput is measured this many times per path, rotating, unless
/// `WEAVEPROXY_BENCH_RUNS` says otherwise; the median is reported.
const STREAM_RUNS: usize = 5;

fn stream_runs() -> usize {
    std::env::var("WEAVEPROXY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(STREAM_RUNS)
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    support::require_docker();
    let img = support::image();
    let proxy = ProxyProc::start_release(&[]);
    let direct = Endpoint::direct();
    let via_unix = Endpoint::Unix(proxy.unix.clone());
    let via_tcp = Endpoint::Tcp(proxy.addr());
    let relay = common::Relay::start(std::path::Path::new("/var/run/docker.sock"));
    let via_relay = Endpoint::Unix(relay.path.clone());
    let streams = Streams {
        direct: &direct,
        proxy: &via_unix,
        relay: &via_relay,
        proxy_pid: proxy.pid(),
        relay_pid: relay.pid(),
    };
    let api = format!("/v{}", support::api_version());
    let mut cleanup = Cleanup::new();
    let mut table = Table::new("weaveproxy vs the Docker socket");

    // Idle: started, one request served, nothing open.
    Conn::open(&via_unix)
        .and_then(|mut c| c.get(&format!("{api}/_ping")))
        .expect("ping through the proxy");
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_mib(proxy.pid());

    if common::selected("latency") {
        for path in ["/_ping", "/containers/json"] {
            let path = format!("{api}{path}");
            // A second direct connection: how far apart two identical paths come out.
            let s = latency(&path, &[&direct, &via_unix, &via_tcp, &via_relay, &direct]);
            let short = path.trim_start_matches(&api);
            for (what, p) in [("median", 50.0), ("p99", 99.0)] {
                table.compare(
                    &format!("`GET {short}` {what}, direct again (the noise)"),
                    s[0].pct(p) * 1000.0,
                    s[4].pct(p) * 1000.0,
                    "µs",
                    Target::None,
                );
                table.compare(
                    &format!("`GET {short}` {what}, bare byte relay (the floor)"),
                    s[0].pct(p) * 1000.0,
                    s[3].pct(p) * 1000.0,
                    "µs",
                    Target::None,
                );
            }
            for (name, i) in [("unix", 1), ("tcp", 2)] {
                table.compare(
                    &format!("`GET {short}` median, proxy over {name}"),
                    s[0].median() * 1000.0,
                    s[i].median() * 1000.0,
                    "µs",
                    Target::RatioAtMost(1.05),
                );
                table.compare(
                    &format!("`GET {short}` p99, proxy over {name}"),
                    s[0].pct(99.0) * 1000.0,
                    s[i].pct(99.0) * 1000.0,
                    "µs",
                    Target::RatioAtMost(1.10),
                );
            }
        }
    }

    if common::selected("export") {
        let name = cleanup.container("export");
        ok(docker(
            DIRECT,
            &[
                "run",
                "--name",
                &name,
                img,
                "sh",
                "-c",
                &format!("head -c {EXPORT_BYTES} /dev/zero > /big"),
            ],
        ));
        let path = format!("{api}/containers/{name}/export");
        streams.measure(
            &mut table,
            ("export stream (1 GiB + rootfs)", "exported"),
            EXPORT_BYTES,
            |to| export(to, &path),
        );
        ok(docker(DIRECT, &["rm", "-f", &name]));
    }

    if common::selected("exec") {
        let name = cleanup.container("exec");
        ok(docker(
            DIRECT,
            &["run", "-d", "--name", &name, img, "sleep", "3600"],
        ));
        streams.measure(
            &mut table,
            (
                "hijacked exec, 256 MiB stdin → stdout",
                "through exec (each way)",
            ),
            EXEC_BYTES,
            |to| exec_stream(to, &api, &name),
        );
    }

    if common::selected("build") {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {img}\nLABEL weaveproxy.bench=1\n"),
        )
        .unwrap();
        // Sparse: cheap to make, and the client still reads and sends every byte.
        std::fs::File::create(dir.path().join("big"))
            .and_then(|f| f.set_len(BUILD_CONTEXT))
            .expect("context file");
        let tag = cleanup.image("build");
        let build = |to: &Endpoint| {
            let t = Instant::now();
            ok(docker_cmd(
                &to.docker_host(),
                &["build", "--no-cache", "-q", "-t", &tag],
            )
            .arg(dir.path())
            .output()
            .expect("docker build")
            .into());
            let mib = BUILD_CONTEXT as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64();
            let _ = docker(DIRECT, &["rmi", "-f", &tag]);
            mib
        };
        streams.measure(
            &mut table,
            ("`docker build`, 1 GiB context", "of build context"),
            BUILD_CONTEXT,
            build,
        );
    }

    table.value("resident memory, idle", idle, "MiB", Target::AtMost(8.0));
    if common::selected("memory") {
        let name = cleanup.container("attach");
        // Its first line of input makes it print ATTACH_OUTPUT bytes, which the daemon sends
        // to every attached client.
        ok(docker(
            DIRECT,
            &[
                "run",
                "-d",
                "-i",
                "--name",
                &name,
                img,
                "sh",
                "-c",
                &format!("read l; head -c {ATTACH_OUTPUT} /dev/zero; exec cat >/dev/null"),
            ],
        ));
        let (rss, after) = idle_hijacks(&proxy, &via_tcp, &api, &name);
        table.value(
            "resident memory, 1,000 idle hijacked connections",
            rss,
            "MiB",
            Target::AtMost(32.0),
        );
        table.value(
            "resident memory, idle again after them",
            after,
            "MiB",
            Target::AtMost(8.0),
        );
    }
    let missed = table.print();
    println!("{missed} target(s) missed");
}

/// Times `LATENCY_REQUESTS` requests to each endpoint, round-robin with a rotating first one;
/// returns the latencies in milliseconds, per endpoint.
fn latency(path: &str, to: &[&Endpoint]) -> Vec<Samples> {
    let mut conns: Vec<Conn> = to.iter().map(|e| Conn::open(e).expect("connect")).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(LATENCY_REQUESTS); to.len()];
    for i in 0..WARMUP + LATENCY_REQUESTS {
        for k in 0..conns.len() {
            let j = (i + k) % conns.len();
            let t = Instant::now();
            let (status, _) = conns[j].get(path).expect("request");
            let took = common::ms(t.elapsed());
            assert_eq!(status, 200, "{path}");
            if i >= WARMUP {
                times[j].push(took);
            }
        }
    }
    times.into_iter().map(Samples::new).collect()
}

/// Where a stream is measured: straight at the daemon, through the proxy, and through the
/// bare relay (the floor for anything in the middle).
struct Streams<'a> {
    direct: &'a Endpoint,
    proxy: &'a Endpoint,
    relay: &'a Endpoint,
    proxy_pid: u32,
    relay_pid: u32,
}

impl Streams<'_> {
    /// Runs `f` (a throughput in MiB/s) `stream_runs()` times on each path, rotating which goes
    /// first, and adds the medians to `table`, with what the daemon, the proxy and the relay
    /// spent in CPU per GiB of `bytes` moved.
    fn measure(
        &self,
        table: &mut Table,
        (what, moved): (&str, &str),
        bytes: u64,
        mut f: impl FnMut(&Endpoint) -> f64,
    ) {
        let paths = [self.direct, self.proxy, self.relay];
        let pids = [common::daemon_pid(), self.proxy_pid, self.relay_pid];
        let cpu_before: Vec<f64> = pids.iter().map(|&p| common::cpu_secs(p)).collect();
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let n = stream_runs();
        for i in 0..n {
            for k in 0..paths.len() {
                let j = (i + k) % paths.len();
                runs[j].push(f(paths[j]));
            }
        }
        let per_gib = |pid: usize, runs: usize| {
            (common::cpu_secs(pids[pid]) - cpu_before[pid]) / runs as f64 * (1u64 << 30) as f64
                / bytes as f64
        };
        let m: Vec<f64> = runs.into_iter().map(|r| Samples::new(r).median()).collect();
        table.compare(what, m[0], m[1], "MiB/s", Target::RatioAtLeast(0.95));
        table.compare(
            &format!("{what}, bare byte relay (the floor)"),
            m[0],
            m[2],
            "MiB/s",
            Target::None,
        );
        // The daemon does the same work on every path: next to its CPU, what the proxy and the
        // relay add tells how much a machine short of cores loses to a process in the middle.
        table.value(
            &format!("dockerd CPU per GiB {moved}"),
            per_gib(0, paths.len() * n),
            "s",
            Target::None,
        );
        table.value(
            &format!("proxy CPU per GiB {moved}"),
            per_gib(1, n),
            "s",
            Target::None,
        );
        table.value(
            &format!("relay CPU per GiB {moved}"),
            per_gib(2, n),
            "s",
            Target::None,
        );
    }
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn export(to: &Endpoint, path: &str) -> f64 {
    let mut c = Conn::open(to).expect("connect");
    let t = Instant::now();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n").as_bytes())
        .unwrap();
    let head = c.read_head().expect("export head");
    assert_eq!(head.status, 200, "{}", head.text);
    let n = c.read_body(&head, |_| {}).expect("export body");
    let d = t.elapsed();
    assert!(n >= EXPORT_BYTES, "export gave {n} bytes");
    mib_per_s(n, d)
}

/// `cat` in an exec: `EXEC_BYTES` in through stdin, the same back through stdout (demultiplexed
/// from Docker's stream framing).
fn exec_stream(to: &Endpoint, api: &str, container: &str) -> f64 {
    let mut d = Conn::open(&Endpoint::direct()).expect("connect");
    let (status, body) = d
        .post_json(
            &format!("{api}/containers/{container}/exec"),
            r#"{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Cmd":["cat"]}"#,
        )
        .expect("exec create");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = v["Id"].as_str().unwrap().to_string();

    let mut c = Conn::open(to).expect("connect");
    let start = r#"{"Detach":false,"Tty":false}"#;
    let t = Instant::now();
    c.send(format!("POST {api}/exec/{id}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{start}", start.len()).as_bytes()).unwrap();
    let head = c.read_head().expect("exec start head");
    assert_eq!(head.status, 101, "{}", head.text);
    let mut stdin = c.writer.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut left = EXEC_BYTES;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stdin.write_all(&chunk[..n]).expect("stdin");
            left -= n as u64;
        }
        stdin.shutdown_write().expect("stdin eof");
    });
    // Read until the daemon closes the stream.
    let mut frames = Demux::default();
    let mut got = 0u64;
    let head = common::Head {
        status: 101,
        content_length: None,
        chunked: false,
        text: String::new(),
    };
    c.read_body(&head, |b| got += frames.payload(b))
        .expect("exec output");
    let d = t.elapsed();
    writer.join().expect("stdin writer");
    assert_eq!(got, EXEC_BYTES, "exec echoed {got} of {EXEC_BYTES} bytes");
    mib_per_s(EXEC_BYTES, d)
}

/// Opens `HIJACKS` attach streams through the proxy, passes data through each both ways, and
/// reads the proxy's memory while they sit idle; then closes them, removes the container and
/// reads it again.
fn idle_hijacks(proxy: &ProxyProc, to: &Endpoint, api: &str, container: &str) -> (f64, f64) {
    let mut conns = Vec::with_capacity(HIJACKS);
    for _ in 0..HIJACKS {
        let mut c = Conn::open(to).expect("connect");
        c.send(format!("POST {api}/containers/{container}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
        let head = c.read_head().expect("attach head");
        assert_eq!(head.status, 101, "{}", head.text);
        conns.push(c);
    }
    conns[0].send(b"go\n").expect("stdin");
    let input = vec![b'x'; ATTACH_INPUT];
    for c in &mut conns {
        let mut got = 0;
        let mut frames = Demux::default();
        while got < ATTACH_OUTPUT {
            let buf = c.reader.fill_buf().expect("attach output");
            assert!(!buf.is_empty(), "attach stream ended after {got} bytes");
            let n = buf.len();
            got += frames.payload(buf);
            c.reader.consume(n);
        }
        c.send(&input).expect("stdin");
    }
    std::thread::sleep(Duration::from_secs(2));
    let busy = rss_mib(proxy.pid());
    drop(conns);
    let _ = docker(DIRECT, &["rm", "-f", container]);
    std::thread::sleep(Duration::from_secs(2));
    let fds = common::open_fds(proxy.pid());
    println!("proxy file descriptors once the connections are gone: {fds}");
    (busy, rss_mib(proxy.pid()))
}

/// Docker's stream framing: [stream, 0, 0, 0, length (u32 BE)] + payload.
#[derive(Default)]
struct Demux {
    header: Vec<u8>,
    payload_left: u64,
}

impl Demux {
    /// Takes the next bytes of the stream; returns how many of them were payload.
    fn payload(&mut self, mut b: &[u8]) -> u64 {
        let mut got = 0;
        while !b.is_empty() {
            if self.payload_left > 0 {
                let n = b.len().min(self.payload_left as usize);
                got += n as u64;
                self.payload_left -= n as u64;
                b = &b[n..];
            } else {
                let n = (8 - self.header.len()).min(b.len());
                self.header.extend_from_slice(&b[..n]);
                b = &b[n..];
                if self.header.len() == 8 {
                    let h = &self.header;
                    self.payload_left = u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
                    self.header.clear();
                }
            }
        }
        got
    }
}
