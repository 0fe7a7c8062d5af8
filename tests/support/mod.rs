//! Fixtures for tests against the real Docker Engine: the daemon check, the busybox test image,
//! a proxy process, docker CLI runners and cleanup guards that work even when a test fails.
#![allow(dead_code)]

pub mod fake_dns;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const DIRECT: &str = "unix:///var/run/docker.sock";
pub const IMAGE: &str = "wpt-busybox:latest";
/// Everything a test makes carries this prefix, so a final sweep can find leftovers.
pub const PREFIX: &str = "wpt-";

/// Fails (never skips) when no daemon answers: a test that needs Docker must not pass without it.
pub fn require_docker() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        daemon_lock(nix::fcntl::FlockArg::LockShared);
        let ok = Command::new("docker")
            .args(["-H", DIRECT, "version", "--format", "{{.Server.Version}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "no Docker daemon answers on /var/run/docker.sock: run scripts/ensure-docker (the README's test command does)"
        );
    });
}

pub fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{PREFIX}{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The busybox test image, made from Debian's static busybox with `docker import` by
/// scripts/busybox-image (no registry is reachable). Idempotent.
pub fn image() -> &'static str {
    static IMG: OnceLock<()> = OnceLock::new();
    IMG.get_or_init(|| {
        require_docker();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox-image");
        let out = Command::new(script)
            .args([IMAGE, "LABEL weaveproxy.test=1"])
            .env("DOCKER_HOST", DIRECT)
            .output()
            .expect("scripts/busybox-image");
        assert!(
            out.status.success(),
            "scripts/busybox-image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// `docker import` of a directory tree as image `tag`, with the test image's settings.
pub fn import_rootfs(dir: &Path, tag: &str) {
    let mut tar = Command::new("tar")
        .args(["-C"])
        .arg(dir)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar");
    let out = Command::new("docker")
        .args(["-H", DIRECT, "import"])
        .args(["--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        .args(["--change", "LABEL weaveproxy.test=1"])
        .args(["--change", "CMD [\"sh\"]"])
        .args(["-", tag])
        .stdin(tar.stdout.take().expect("tar stdout"))
        .output()
        .expect("docker import");
    assert!(
        tar.wait().expect("tar").success(),
        "tar of the rootfs failed"
    );
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test image's files, unpacked into `root` (for tests that need a variant of it).
pub fn rootfs_of_test_image(root: &Path) {
    let id = ok(docker(DIRECT, &["create", image()])).trim().to_string();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker -H {DIRECT} export {id} | tar -C '{}' -x",
            root.display()
        ))
        .status()
        .expect("docker export");
    let _ = docker(DIRECT, &["rm", "-f", &id]);
    assert!(export.success(), "docker export of the test image");
}

#[derive(Debug, Clone)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code: o.status.code().unwrap_or(-1),
        }
    }
}

pub fn docker_cmd(host: &str, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CLI_HINTS", "false")
        .args(args);
    c
}

pub fn docker(host: &str, args: &[&str]) -> Out {
    docker_cmd(host, args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
        .into()
}

pub fn docker_stdin(host: &str, args: &[&str], input: &[u8]) -> Out {
    output_with_stdin(docker_cmd(host, args), input)
}

/// Runs `cmd` with `input` on its stdin, closed at its end.
pub fn output_with_stdin(mut cmd: Command, input: &[u8]) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a command");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait docker");
    let _ = writer.join();
    out.into()
}

/// Asserts success and returns stdout.
/// `docker run -d --name NAME OPTS... IMAGE sleep 600` at `host`: a container that stays up
/// for the test; its id.
pub fn sleeper(host: &str, name: &str, opts: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.extend([image(), "sleep", "600"]);
    ok(docker(host, &args))
}

pub fn ok(out: Out) -> String {
    assert_eq!(out.code, 0, "docker failed: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// Removes what a test made, also when it panics.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
    links: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup::default()
    }

    /// A container name, registered for removal.
    pub fn container(&mut self, name: &str) -> String {
        let n = unique(name);
        self.containers.push(n.clone());
        n
    }

    pub fn add_container(&mut self, id: &str) {
        self.containers.push(id.to_string());
    }

    /// An image name, registered for removal.
    pub fn image(&mut self, name: &str) -> String {
        let n = format!("{}:latest", unique(name));
        self.images.push(n.clone());
        n
    }

    pub fn link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = docker(DIRECT, &args);
        }
        for img in &self.images {
            let _ = docker(DIRECT, &["rmi", "-f", img]);
        }
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
    }
}

/// A proxy process on a free tcp port and a unix socket of its own; stopped on drop.
pub struct ProxyProc {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// A bridge of this proxy's own, so that tests never share (or break) one.
    pub bridge: String,
    /// False for a proxy that shares another's bridge: the owner removes it.
    owns_bridge: bool,
    pub tcp: String,
    pub unix: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ProxyProc {
    pub fn start(extra: &[&str]) -> ProxyProc {
        ProxyProc::start_with(extra, true)
    }

    pub fn start_with(extra: &[&str], wait: bool) -> ProxyProc {
        ProxyProc::start_on(extra, &[], wait, None)
    }

    /// `env`: variables the proxy gets on top of the test's environment.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)], wait: bool) -> ProxyProc {
        ProxyProc::start_on(extra, env, wait, None)
    }

    /// A second proxy on `other`'s bridge (two hosts' proxies on one weave network).
    pub fn start_sharing(extra: &[&str], other: &ProxyProc) -> ProxyProc {
        ProxyProc::start_on(extra, &[], true, Some(other.bridge.clone()))
    }

    /// The release build that goes into the image (scripts/build-static all), logging at the
    /// product's default level: what the benchmarks measure.
    pub fn start_release(extra: &[&str]) -> ProxyProc {
        let mut args = vec!["--log-level", "info"];
        args.extend(extra);
        ProxyProc::launch(&release_binary(), &args, &[], true, None)
    }

    fn start_on(
        extra: &[&str],
        env: &[(&str, &str)],
        wait: bool,
        shared_bridge: Option<String>,
    ) -> ProxyProc {
        let bin = Path::new(env!("CARGO_BIN_EXE_weaveproxy"));
        ProxyProc::launch(bin, extra, env, wait, shared_bridge)
    }

    fn launch(
        bin: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        wait: bool,
        shared_bridge: Option<String>,
    ) -> ProxyProc {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tcp = format!("tcp://127.0.0.1:{port}");
        let unix = dir.path().join("proxy.sock");
        let log = dir.path().join("proxy.log");
        let owns_bridge = shared_bridge.is_none();
        let bridge = shared_bridge.unwrap_or_else(bridge_name);
        // A weavewait of this proxy's own: a proxy attaches only containers that it prepared,
        // and tests run many proxies against one daemon.
        let ww = dir.path().join("weavewait");
        std::fs::copy(weavewait(), &ww).unwrap();
        let mut args: Vec<String> = vec![
            "-H".into(),
            tcp.clone(),
            "-H".into(),
            format!("unix://{}", unix.display()),
            "--weavewait".into(),
            ww.display().to_string(),
            "--bridge".into(),
            bridge.clone(),
            "--log-target".into(),
            "stderr".into(),
        ];
        // Tests read the debug log; a benchmark may ask for less.
        if !extra.contains(&"--log-level") {
            args.extend(["--log-level".into(), "debug".into()]);
        }
        // Not the machine's network service and weaveDNS on their default ports, which a test
        // of the front end may be running: closed ports, so claims need no allocator and DNS is
        // off unless a test says otherwise.
        for api in ["--weave-api", "--dns-api"] {
            if !extra.contains(&api) {
                args.extend([api.into(), format!("http://127.0.0.1:{}", free_port())]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn_proxy(bin, &args, &env, &log);
        let p = ProxyProc {
            child: Some(child),
            bin: bin.to_path_buf(),
            args,
            env,
            bridge,
            owns_bridge,
            tcp,
            unix,
            log,
            _dir: dir,
        };
        if wait {
            p.wait_listening();
        }
        p
    }

    /// Starts a terminated proxy again with the same settings.
    pub fn restart_stopped(&mut self) {
        assert!(self.child.is_none(), "terminate() first");
        self.child = Some(spawn_proxy(&self.bin, &self.args, &self.env, &self.log));
        self.wait_listening();
    }

    pub fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = self.tcp.trim_start_matches("tcp://").to_string();
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() && self.unix.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy did not start listening; log:\n{}", self.log_text());
    }

    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.unix.display())
    }

    pub fn addr(&self) -> String {
        self.tcp.trim_start_matches("tcp://").to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- proxy log ({}):\n{}", self.tcp, self.log_text());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.owns_bridge {
            remove_bridge(&self.bridge);
        }
    }
}

/// Deletes a test bridge and the forwarding rule the proxy added for it.
pub fn remove_bridge(bridge: &str) {
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
    for _ in 0..8 {
        let ok = Command::new("iptables")
            .args([
                "-w", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            break;
        }
    }
}

fn spawn_proxy(bin: &Path, args: &[String], env: &[(String, String)], log: &Path) -> Child {
    let mut cmd = Command::new(bin);
    // The TLS defaults come from here; a test names them when it wants them.
    cmd.env_remove("DOCKER_CERT_PATH");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    for (k, _) in std::env::vars() {
        if k.starts_with("WEAVEPROXY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.spawn().expect("start weaveproxy")
}

/// A bridge name unique to this test process (15 characters at most).
pub fn bridge_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wpt{}b{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The static release proxy that scripts/build-static all leaves in target/image, or the one
/// `WEAVEPROXY_BENCH_BINARY` names (a build with symbols, for profiling).
pub fn release_binary() -> PathBuf {
    let path = std::env::var_os("WEAVEPROXY_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image/weaveproxy"));
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-static all (scripts/bench does)",
        path.display()
    );
    path
}

/// The static weavewait, built by scripts/build-static (the README's test command runs it).
pub fn weavewait() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("x86_64-unknown-linux-gnu/weavewait/weavewait");
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-static weavewait (the README's test command does)",
        path.display()
    );
    path
}

/// A raw HTTP/1.1 connection, for what the docker CLI does not show.
pub enum Raw {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Raw {
    pub fn tcp(addr: &str) -> Raw {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw::Tcp(s)
    }

    pub fn unix(path: &Path) -> Raw {
        let s = std::os::unix::net::UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw::Unix(s)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        match self {
            Raw::Tcp(s) => s.write_all(bytes).unwrap(),
            Raw::Unix(s) => s.write_all(bytes).unwrap(),
        }
    }

    pub fn read_some(&mut self, buf: &mut [u8]) -> usize {
        match self {
            Raw::Tcp(s) => s.read(buf).unwrap_or(0),
            Raw::Unix(s) => s.read(buf).unwrap_or(0),
        }
    }

    pub fn shutdown_write(&mut self) {
        let _ = match self {
            Raw::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Raw::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    pub fn set_read_timeout(&mut self, d: Duration) {
        let _ = match self {
            Raw::Tcp(s) => s.set_read_timeout(Some(d)),
            Raw::Unix(s) => s.set_read_timeout(Some(d)),
        };
    }

    /// Reads the response head, byte for byte, up to and including the blank line.
    pub fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if self.read_some(&mut b) == 0 {
                break;
            }
            head.push(b[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Reads one complete response (head + body by Content-Length or chunked); returns
    /// (head, body).
    pub fn read_response(&mut self) -> (String, Vec<u8>) {
        let head = self.read_head();
        let lower = head.to_ascii_lowercase();
        let mut body = Vec::new();
        if let Some(len) = header_value(&lower, "content-length") {
            let len: usize = len.parse().unwrap();
            body.resize(len, 0);
            let mut got = 0;
            while got < len {
                let n = self.read_some(&mut body[got..]);
                assert!(n > 0, "eof in body");
                got += n;
            }
        } else if header_value(&lower, "transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let line = self.read_line();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0u8; size + 2];
                let mut got = 0;
                while got < chunk.len() {
                    let n = self.read_some(&mut chunk[got..]);
                    assert!(n > 0, "eof in chunk");
                    got += n;
                }
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        (head, body)
    }

    pub fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.read_some(&mut b) == 0 {
                break;
            }
            line.push(b[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_some(&mut buf);
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }
}

pub fn header_value(head_lower: &str, name: &str) -> Option<String> {
    head_lower.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// The daemon's socket as a raw connection.
pub fn raw_direct() -> Raw {
    Raw::unix(Path::new("/var/run/docker.sock"))
}

pub fn api_version() -> String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        ok(docker(
            DIRECT,
            &["version", "--format", "{{.Server.APIVersion}}"],
        ))
        .trim()
        .to_string()
    })
    .clone()
}

/// Held by tests that use the fixed names of the `weave` front end (containers `weave`,
/// `weavedns`, `weaveproxy`; bridge `weave`; ports 6784 and 12375): only one such test runs at
/// a time on this machine, across test binaries and checkouts.
pub struct FixedNames {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

pub fn fixed_names() -> FixedNames {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/weaveproxy-tests-fixed-names.lock")
        .expect("open the fixed-names lock file");
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the fixed-names lock file");
    FixedNames { _lock: lock }
}

/// The product's image for this checkout. Checkouts on one machine share the daemon, so each
/// tags its own image (the `weave` front end reads WEAVEPROXY_IMAGE).
pub fn product_image() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let tag: u32 = dir.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("weaveworks/weaveproxy:test-{tag:08x}")
}

/// The front end's services on this machine, for one test: holds the fixed-names lock, builds
/// this checkout's product image from the static binaries (scripts/build-static all), and on
/// drop removes the services' containers, volumes, bridge and the image.
pub struct Services {
    pub image: String,
    _lock: FixedNames,
}

pub const SERVICE_CONTAINERS: &[&str] = &["weaveproxy", "weavedns", "weave"];
pub const SERVICE_VOLUMES: &[&str] = &["weaveproxy-weavewait", "weavedb"];

impl Services {
    pub fn new() -> Services {
        require_docker();
        let lock = fixed_names();
        let image = product_image();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for bin in ["weaveproxy", "weavewait"] {
            assert!(
                root.join("target/image").join(bin).is_file(),
                "target/image/{bin} missing: run scripts/build-static all (the README's test command does)"
            );
        }
        let s = Services { image, _lock: lock };
        s.remove_services();
        let out: Out = Command::new("docker")
            .args(["-H", DIRECT, "build", "-q", "-f", "image/Dockerfile"])
            .args(["--target", "local", "-t", &s.image, "."])
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(root)
            .output()
            .expect("docker build")
            .into();
        assert_eq!(out.code, 0, "building the product image: {}", out.stderr);
        s
    }

    /// The `weave` front end, as a user on this host runs it.
    pub fn weave(&self, args: &[&str]) -> Out {
        self.weave_with(args, &[])
    }

    pub fn weave_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weave"));
        c.args(args)
            .env("WEAVEPROXY_IMAGE", &self.image)
            .env("DOCKER_HOST", DIRECT)
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run weave").into()
    }

    fn remove_services(&self) {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(SERVICE_CONTAINERS);
        let _ = docker(DIRECT, &args);
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(SERVICE_VOLUMES);
        let _ = docker(DIRECT, &args);
        remove_bridge("weave");
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in SERVICE_CONTAINERS {
                let logs = docker(DIRECT, &["logs", "--tail", "40", c]);
                if logs.code == 0 {
                    eprintln!("---- docker logs {c}:\n{}{}", logs.stdout, logs.stderr);
                }
            }
        }
        self.remove_services();
        let _ = docker(DIRECT, &["rmi", "-f", &self.image]);
    }
}

/// Our network service (`weave launch`'s IPAM) as a process of the test's own: its own port,
/// data directory and bridge (a proxy's), so tests never share one. Stopped on drop.
pub struct NetworkService {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl NetworkService {
    pub fn start(bridge: &str, range: &str) -> NetworkService {
        NetworkService::start_on(free_port(), bridge, range)
    }

    /// On a given port: a proxy started earlier may already point at it.
    pub fn start_on(port: u16, bridge: &str, range: &str) -> NetworkService {
        let bin = Path::new(env!("CARGO_BIN_EXE_weaveproxy"));
        NetworkService::launch(bin, port, bridge, range)
    }

    /// The release build, as the benchmarks measure it.
    pub fn start_release_on(port: u16, bridge: &str, range: &str) -> NetworkService {
        NetworkService::launch(&release_binary(), port, bridge, range)
    }

    fn launch(bin: &Path, port: u16, bridge: &str, range: &str) -> NetworkService {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("network.log");
        let args: Vec<String> = [
            "weave",
            "serve-network",
            "--ipalloc-range",
            range,
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.path().join("db").display().to_string(),
            "--bridge",
            bridge,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut s = NetworkService {
            child: None,
            bin: bin.to_path_buf(),
            args,
            port,
            log,
            _dir: dir,
        };
        s.restart();
        s
    }

    /// The `--weave-api` value for a proxy.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it without a chance to clean up, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again, with the same data directory) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill() first");
        self.child = Some(spawn_proxy(&self.bin, &self.args, &[], &self.log));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "network service did not listen; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NetworkService {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- network service log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.kill();
    }
}

/// The IPv4 addresses in `ip -4 addr show` output, as (address, prefix length).
pub fn ethwe_v4(out: &str) -> Vec<(std::net::Ipv4Addr, u8)> {
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .filter_map(|w| {
            let (ip, len) = w.split_once('/')?;
            Some((ip.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}

/// `docker run --rm -e WEAVE_CIDR=... IMAGE ip -4 addr show ethwe` at `host`: the container's
/// weave addresses (the seed's Usage example).
pub fn run_ethwe_v4(host: &str, weave_cidr: &str) -> Vec<(std::net::Ipv4Addr, u8)> {
    let env = format!("WEAVE_CIDR={weave_cidr}");
    let args = [
        "run",
        "--rm",
        "-e",
        &env,
        image(),
        "ip",
        "-4",
        "addr",
        "show",
    ];
    ethwe_v4(&ok(docker(host, &[&args[..], &["ethwe"]].concat())))
}

pub fn in_subnet(ip: std::net::Ipv4Addr, net: std::net::Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// `docker inspect -f FORMAT NAME`, trimmed.
pub fn inspect(name: &str, format: &str) -> String {
    ok(docker(DIRECT, &["inspect", "-f", format, name]))
        .trim()
        .to_string()
}

/// Polls `f` for up to 30 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Every test process holds this lock shared while it uses the daemon; the test that restarts
/// the daemon holds it exclusively, so it never pulls the daemon from under another test run
/// on this machine. Held until the process exits.
fn daemon_lock(how: nix::fcntl::FlockArg) {
    static LOCK: OnceLock<nix::fcntl::Flock<std::fs::File>> = OnceLock::new();
    LOCK.get_or_init(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/weaveproxy-tests-daemon.lock")
            .expect("open the daemon lock file");
        nix::fcntl::Flock::lock(file, how)
            .map_err(|(_, e)| e)
            .expect("lock the daemon lock file")
    });
}

/// For the one test that restarts the daemon: waits until no other test process uses it.
/// Must come before anything that calls `require_docker`.
pub fn exclusive_daemon() {
    daemon_lock(nix::fcntl::FlockArg::LockExclusive);
}

/// Stops the Docker daemon and starts it again the way scripts/ensure-docker does (or through
/// systemd where it runs the daemon). Containers with a restart policy come back with it.
pub fn restart_daemon() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let systemd = Path::new("/run/systemd/system").exists()
        && Command::new("systemctl")
            .args(["is-active", "--quiet", "docker"])
            .status()
            .is_ok_and(|s| s.success());
    if systemd {
        let st = Command::new("systemctl")
            .args(["restart", "docker"])
            .status()
            .expect("systemctl");
        assert!(st.success(), "systemctl restart docker failed");
        return;
    }
    let pid = std::fs::read_to_string("/var/run/docker.pid").expect("/var/run/docker.pid");
    let pid = pid.trim().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success(), "kill dockerd {pid}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "dockerd {pid} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = Command::new(root.join("scripts/ensure-docker"))
        .status()
        .expect("scripts/ensure-docker");
    assert!(
        st.success(),
        "scripts/ensure-docker could not start the daemon again"
    );
}

/// The docker bridge's IP (where weaveDNS serves containers), computed as the product does:
/// the gateway of the bridge network's IPAM config, else the first address of its subnet.
pub fn docker_bridge_ip() -> std::net::Ipv4Addr {
    let out = ok(docker(
        DIRECT,
        &[
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}} {{end}}",
        ],
    ));
    let configs: Vec<(Option<String>, Option<String>)> = out
        .split_whitespace()
        .filter_map(|c| c.split_once('|'))
        .map(|(g, s)| {
            let some = |x: &str| (!x.is_empty()).then(|| x.to_string());
            (some(g), some(s))
        })
        .collect();
    weaveproxy::dns::gateway(&configs).expect("the docker bridge has an IPv4 address")
}
