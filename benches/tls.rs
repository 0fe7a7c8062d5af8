//! What TLS on the listener costs: request latency (on one kept-alive connection, and with a new
//! connection per request, handshake included, as the docker CLI does per command) and the
//! throughput of a hijacked stream (`exec` output), through the TLS listener and the plain one,
//! each as a ratio against the daemon's own socket in the same run. Also the proxies' peak RSS.
//!
//! `cargo bench --bench tls` (needs the daemon and scripts/build-static weavewait). Bounded:
//! every loop has a fixed count, all traffic is to this machine's loopback and the daemon.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/tls.rs"]
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use support::{Cleanup, DIRECT, ProxyProc, docker, image, ok};
use tls_support::{Pki, client_config};

const KEPT_ALIVE: usize = 2000;
const NEW_CONNECTIONS: usize = 300;
const STREAM_BYTES: usize = 256 << 20;
const ROUNDS: usize = 5;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

#[derive(Clone)]
enum Target {
    Unix(String),
    Tcp(String),
    Tls(String, Arc<rustls::ClientConfig>),
}

impl Target {
    fn connect(&self) -> Box<dyn Stream> {
        match self {
            Target::Unix(p) => Box::new(UnixStream::connect(p).unwrap()),
            Target::Tcp(a) => {
                let s = TcpStream::connect(a).unwrap();
                s.set_nodelay(true).unwrap();
                Box::new(s)
            }
            Target::Tls(a, config) => {
                let s = TcpStream::connect(a).unwrap();
                s.set_nodelay(true).unwrap();
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
                Box::new(rustls::StreamOwned::new(conn, s))
            }
        }
    }
}

/// One HTTP/1.1 response's head and body (by Content-Length); `buf` keeps what was read past it.
fn read_response(s: &mut dyn Stream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "eof in response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len = support::header_value(&head.to_ascii_lowercase(), "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < end + len {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "eof in response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    (head, body)
}

fn ping(s: &mut dyn Stream, buf: &mut Vec<u8>) {
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(s, buf);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"OK");
}

/// Microseconds per request on one connection.
fn kept_alive(t: &Target) -> f64 {
    let mut s = t.connect();
    let mut buf = Vec::new();
    ping(&mut *s, &mut buf);
    let start = Instant::now();
    for _ in 0..KEPT_ALIVE {
        ping(&mut *s, &mut buf);
    }
    start.elapsed().as_secs_f64() * 1e6 / KEPT_ALIVE as f64
}

/// Microseconds per request, each on a new connection (TLS: full handshake).
fn new_connections(t: &Target) -> f64 {
    let start = Instant::now();
    for _ in 0..NEW_CONNECTIONS {
        let mut s = t.connect();
        ping(&mut *s, &mut Vec::new());
    }
    start.elapsed().as_secs_f64() * 1e6 / NEW_CONNECTIONS as f64
}

fn post_json(s: &mut dyn Stream, path: &str, json: &str, upgrade: bool) {
    let extra = if upgrade {
        "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    } else {
        ""
    };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{json}",
        json.len()
    );
    s.write_all(req.as_bytes()).unwrap();
}

/// MB/s of an exec's output (`head -c STREAM_BYTES /dev/zero`) over a hijacked stream.
fn stream(t: &Target, container: &str) -> f64 {
    let mut s = t.connect();
    let mut buf = Vec::new();
    let cmd =
        format!(r#"{{"AttachStdout":true,"Cmd":["head","-c","{STREAM_BYTES}","/dev/zero"]}}"#);
    post_json(
        &mut *s,
        &format!("/containers/{container}/exec"),
        &cmd,
        false,
    );
    let (head, body) = read_response(&mut *s, &mut buf);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let id: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = id["Id"].as_str().unwrap().to_string();

    let mut s = t.connect();
    let mut buf = Vec::new();
    let start = Instant::now();
    post_json(
        &mut *s,
        &format!("/exec/{id}/start"),
        r#"{"Detach":false,"Tty":false}"#,
        true,
    );
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    let mut total = buf.len() - end;
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => total += n,
            // A TLS peer that closes without close_notify is an error to rustls; the bytes
            // counted so far are what arrived.
            Err(_) => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // stdcopy frames add 8 bytes per frame: at least the output itself arrived.
    assert!(total >= STREAM_BYTES, "{total} < {STREAM_BYTES}");
    STREAM_BYTES as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // the test suite should not pay for a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/tls.rs: run it with `cargo bench --bench tls`");
        return;
    }
    let pki = Pki::new("bench");
    let server = pki.server("server");
    let client = pki.client("client");
    let quiet = ["--log-level", "warn"];
    let plain = ProxyProc::start(&quiet);
    let mut args: Vec<String> = server.proxy_flags();
    args.extend(quiet.iter().map(|s| s.to_string()));
    let tls = ProxyProc::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let config = client_config(&pki.ca, Some(&client));
    let targets = [
        (
            "direct unix socket",
            Target::Unix("/var/run/docker.sock".into()),
        ),
        ("proxy, plain tcp", Target::Tcp(plain.addr())),
        ("proxy, TLS tcp", Target::Tls(tls.addr(), config)),
    ];

    let mut c = Cleanup::new();
    let name = c.container("bench-tls");
    ok(docker(
        DIRECT,
        &["run", "-d", "--name", &name, image(), "sleep", "600"],
    ));

    type Measure = fn(&Target) -> f64;
    let measures: [(&str, &str, Measure); 2] = [
        ("ping, kept-alive connection", "µs", kept_alive),
        ("ping, new connection each", "µs", new_connections),
    ];
    let mut results: Vec<(String, &str, [f64; 3])> = Vec::new();
    for (what, unit, f) in measures {
        let mut runs = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            // Interleaved, so that load from elsewhere on the machine hits all three alike.
            for (i, (_, t)) in targets.iter().enumerate() {
                runs[i].push(f(t));
            }
        }
        let m = runs.map(median);
        results.push((what.to_string(), unit, m));
    }
    let mut runs = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, (_, t)) in targets.iter().enumerate() {
            runs[i].push(stream(t, &name));
        }
    }
    results.push((
        format!("exec output stream, {} MiB", STREAM_BYTES >> 20),
        "MB/s",
        runs.map(median),
    ));

    println!(
        "\n| measure | direct | plain tcp | TLS tcp | plain / direct | TLS / direct | TLS / plain |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (what, unit, [d, p, t]) in &results {
        println!(
            "| {what} ({unit}) | {d:.0} | {p:.0} | {t:.0} | {:.2} | {:.2} | {:.2} |",
            p / d,
            t / d,
            t / p
        );
    }
    let (rp, rt) = (peak_rss_kib(plain.pid()), peak_rss_kib(tls.pid()));
    println!(
        "\npeak RSS of the proxy: plain {rp} KiB, TLS {rt} KiB (TLS / plain {:.2})",
        rt as f64 / rp.max(1) as f64
    );
}
