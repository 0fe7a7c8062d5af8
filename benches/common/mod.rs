//! What the benchmarks share: a buffered keep-alive HTTP/1.1 client for the daemon's socket and
//! the proxy's listeners, order statistics, the result table, and process memory.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where a client connects: the daemon's socket or one of the proxy's listeners.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    /// `host:port`
    Tcp(String),
}

impl Endpoint {
    pub fn direct() -> Endpoint {
        Endpoint::Unix("/var/run/docker.sock".into())
    }

    /// The form `DOCKER_HOST` takes.
    pub fn docker_host(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn connect(to: &Endpoint) -> io::Result<Stream> {
        Ok(match to {
            Endpoint::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        })
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(d),
            Stream::Tcp(s) => s.set_read_timeout(d),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One keep-alive connection. Reads go through a buffer, so a request costs the same few
/// syscalls on every side, and the client's own overhead stays small next to what is measured.
pub struct Conn {
    pub reader: BufReader<Stream>,
    pub writer: Stream,
}

pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub text: String,
}

impl Conn {
    pub fn open(to: &Endpoint) -> io::Result<Conn> {
        let s = Stream::connect(to)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(256 * 1024, s),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn read_head(&mut self) -> io::Result<Head> {
        let mut text = String::new();
        loop {
            let start = text.len();
            if self.reader.read_line(&mut text)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
            }
            if &text[start..] == "\r\n" {
                break;
            }
        }
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line: {text:?}")))?;
        let mut content_length = None;
        let mut chunked = false;
        for line in text.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                content_length = v.parse().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        Ok(Head {
            status,
            content_length,
            chunked,
            text,
        })
    }

    /// Reads a body framed as `head` says, handing each piece to `sink`; returns its length.
    pub fn read_body(&mut self, head: &Head, mut sink: impl FnMut(&[u8])) -> io::Result<u64> {
        if head.chunked {
            let mut total = 0;
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line)?;
                let size = line.trim().split(';').next().unwrap_or("");
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers (none from the daemon), then the blank line.
                    loop {
                        line.clear();
                        self.reader.read_line(&mut line)?;
                        if line == "\r\n" || line.is_empty() {
                            return Ok(total);
                        }
                    }
                }
                self.read_exact_into(size, &mut sink)?;
                total += size;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf)?;
            }
        } else if let Some(len) = head.content_length {
            self.read_exact_into(len, &mut sink)?;
            Ok(len)
        } else {
            // Delimited by the end of the connection.
            let mut total = 0;
            loop {
                let buf = self.reader.fill_buf()?;
                if buf.is_empty() {
                    return Ok(total);
                }
                let n = buf.len();
                sink(buf);
                self.reader.consume(n);
                total += n as u64;
            }
        }
    }

    fn read_exact_into(&mut self, mut left: u64, sink: &mut impl FnMut(&[u8])) -> io::Result<()> {
        while left > 0 {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in body"));
            }
            let n = buf.len().min(left as usize);
            sink(&buf[..n]);
            self.reader.consume(n);
            left -= n as u64;
        }
        Ok(())
    }

    /// A request without a body; returns the status and the body.
    pub fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n").as_bytes())?;
        let head = self.read_head()?;
        let mut body = Vec::new();
        self.read_body(&head, |b| body.extend_from_slice(b))?;
        Ok((head.status, body))
    }

    pub fn post_json(&mut self, path: &str, json: &str) -> io::Result<(u16, Vec<u8>)> {
        self.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
            .as_bytes(),
        )?;
        let head = self.read_head()?;
        let mut body = Vec::new();
        self.read_body(&head, |b| body.extend_from_slice(b))?;
        Ok((head.status, body))
    }
}

/// Sorted samples with nearest-rank percentiles.
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut v: Vec<f64>) -> Samples {
        v.sort_by(f64::total_cmp);
        Samples(v)
    }

    pub fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> f64 {
        self.pct(50.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// What a row is compared with.
#[derive(Clone, Copy)]
pub enum Target {
    /// proxy / direct must be at most this.
    RatioAtMost(f64),
    /// proxy / direct must be at least this.
    RatioAtLeast(f64),
    /// The proxy's own value must be at most this.
    AtMost(f64),
    None,
}

pub struct Row {
    pub what: String,
    pub direct: Option<f64>,
    pub proxy: f64,
    pub unit: &'static str,
    pub target: Target,
}

fn fmt_value(v: f64, unit: &str) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.digits$} {unit}")
}

/// A result table, printed as Markdown so that it can go into the README as it is.
pub struct Table {
    title: String,
    rows: Vec<Row>,
}

impl Table {
    pub fn new(title: &str) -> Table {
        Table {
            title: title.to_string(),
            rows: Vec::new(),
        }
    }

    pub fn compare(
        &mut self,
        what: &str,
        direct: f64,
        proxy: f64,
        unit: &'static str,
        target: Target,
    ) {
        self.rows.push(Row {
            what: what.to_string(),
            direct: Some(direct),
            proxy,
            unit,
            target,
        });
    }

    pub fn value(&mut self, what: &str, proxy: f64, unit: &'static str, target: Target) {
        self.rows.push(Row {
            what: what.to_string(),
            direct: None,
            proxy,
            unit,
            target,
        });
    }

    /// Prints the table; returns how many targets were missed.
    pub fn print(&self) -> usize {
        let mut missed = 0;
        println!();
        println!("### {} ({})", self.title, today());
        println!();
        println!("| measure | direct | proxy | ratio | target | result |");
        println!("|---|---:|---:|---:|---|---|");
        for r in &self.rows {
            let ratio = r.direct.map(|d| r.proxy / d);
            let (target, pass) = match r.target {
                Target::RatioAtMost(t) => (format!("≤ {t:.2}×"), ratio.map(|x| x <= t)),
                Target::RatioAtLeast(t) => (format!("≥ {t:.2}×"), ratio.map(|x| x >= t)),
                Target::AtMost(t) => (format!("≤ {}", fmt_value(t, r.unit)), Some(r.proxy <= t)),
                Target::None => ("—".to_string(), None),
            };
            let result = match pass {
                Some(true) => "pass",
                Some(false) => {
                    missed += 1;
                    "**miss**"
                }
                None => "—",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.what,
                r.direct
                    .map(|d| fmt_value(d, r.unit))
                    .unwrap_or_else(|| "—".into()),
                fmt_value(r.proxy, r.unit),
                ratio
                    .map(|x| format!("{x:.3}×"))
                    .unwrap_or_else(|| "—".into()),
                target,
                result
            );
        }
        println!();
        missed
    }
}

/// The date in UTC, `YYYY-MM-DD`, without a date crate.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Howard Hinnant's days-to-civil.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Benchmarks are run by `cargo bench`, which passes `--bench`; `cargo test --all-targets`
/// runs them without it, and then only the self-checks run (a full run takes minutes of
/// daemon work). Other arguments select sections by name.
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--relay")
        && let (Some(listen), Some(upstream)) = (args.get(2), args.get(3))
    {
        relay_main(Path::new(listen), Path::new(upstream));
    }
    let bench = args.iter().any(|a| a == "--bench");
    if !bench {
        self_check();
        println!("statistics checked; run the benchmark itself with scripts/bench");
    }
    bench
}

pub fn selected(section: &str) -> bool {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    wanted.is_empty() || wanted.iter().any(|w| section.contains(w.as_str()))
}

fn self_check() {
    let s = Samples::new((1..=100).map(f64::from).rev().collect());
    assert_eq!(s.median(), 50.0);
    assert_eq!(s.pct(99.0), 99.0);
    assert_eq!(s.pct(100.0), 100.0);
    assert_eq!(s.pct(0.0), 1.0);
    assert_eq!(Samples::new(vec![3.0]).pct(99.0), 3.0);
}

/// The least any proxy can cost: a relay process that copies bytes between each client and
/// the daemon's socket, one thread per direction, without looking at them. What it costs (in
/// latency, throughput and CPU) is the floor for any process in the middle on this machine.
/// It is this benchmark binary, started again with `--relay`.
pub struct Relay {
    child: std::process::Child,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    pub fn start(upstream: &Path) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.sock");
        let child = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("--relay")
            .arg(&path)
            .arg(upstream)
            .spawn()
            .expect("start the relay");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < deadline, "the relay did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Relay {
            child,
            path,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay process: serves `listen` until killed.
fn relay_main(listen: &Path, upstream: &Path) -> ! {
    let listener = std::os::unix::net::UnixListener::bind(listen).expect("relay bind");
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(daemon) = UnixStream::connect(upstream) else {
            continue;
        };
        let pairs = [
            (client.try_clone(), daemon.try_clone()),
            (daemon.try_clone(), client.try_clone()),
        ];
        for (from, to) in pairs {
            if let (Ok(mut from), Ok(mut to)) = (from, to) {
                std::thread::spawn(move || {
                    // The proxy's buffer size.
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    }
    std::process::exit(0)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    // In USER_HZ, which is 100 on Linux whatever the kernel's own tick rate.
    (ticks(11) + ticks(12)) / 100.0
}

/// dockerd's process id (0 if unknown).
pub fn daemon_pid() -> u32 {
    std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0)
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs the docker CLI and times it; panics (with its output) if it fails.
pub fn timed_docker(host: &str, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = crate::support::docker(host, args);
    let took = t.elapsed();
    assert_eq!(out.code, 0, "docker {args:?}: {}{}", out.stdout, out.stderr);
    took
}

/// The release proxy pointed at a network service of its own, on the proxy's bridge: what
/// `weave launch` + `weave launch-proxy` run, without the fixed names.
pub struct Weave {
    // Stopped before the proxy, whose guard removes the bridge they share.
    pub service: crate::support::NetworkService,
    pub proxy: crate::support::ProxyProc,
}

impl Weave {
    pub fn start(range: &str) -> Weave {
        let port = crate::support::free_port();
        let api = format!("http://127.0.0.1:{port}");
        let proxy = crate::support::ProxyProc::start_release(&["--weave-api", &api]);
        let service = crate::support::NetworkService::start_release_on(port, &proxy.bridge, range);
        Weave { service, proxy }
    }
}

/// `runs` pairs of `a` and `b`, alternating which goes first; returns what each gave.
pub fn interleave(
    runs: usize,
    mut a: impl FnMut(usize) -> f64,
    mut b: impl FnMut(usize) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        if i % 2 == 0 {
            xs.push(a(i));
            ys.push(b(i));
        } else {
            ys.push(b(i));
            xs.push(a(i));
        }
    }
    (xs, ys)
}
