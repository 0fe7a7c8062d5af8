//! The `weave` front end on the real engine: the services as containers from the product image
//! (`weave launch`, `weave launch-proxy`), a user who follows the seed's Usage and IPAM sections
//! through `eval "$(weave proxy-env)"`, and `docker-compose up` with compose.yaml.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Cleanup, DIRECT, Out, Services, docker, ethwe_v4, in_subnet, ok};

/// `export DOCKER_HOST=...` → the address.
fn docker_host_from_proxy_env(s: &Services) -> String {
    let env = ok(s.weave(&["proxy-env"]));
    let host = env
        .trim()
        .strip_prefix("export DOCKER_HOST=")
        .unwrap_or_else(|| panic!("proxy-env printed {env:?}"));
    host.to_string()
}

#[test]
fn launch_proxy_then_seed_usage_through_proxy_env() {
    let s = Services::new();
    let mut cleanup = Cleanup::new();
    let img = support::image();

    let id = ok(s.weave(&["launch-proxy"]));
    assert_eq!(id.trim().len(), 64, "launch-proxy prints the id: {id}");
    let again = s.weave(&["launch-proxy"]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("already running") && again.stderr.contains("weave stop-proxy"),
        "{}",
        again.stderr
    );

    let host = docker_host_from_proxy_env(&s);
    assert_eq!(host, "tcp://127.0.0.1:12375");
    assert_eq!(
        ok(s.weave(&["proxy-config"])).trim(),
        "-H=tcp://127.0.0.1:12375"
    );
    let status = ok(s.weave(&["status"]));
    assert!(status.contains("weave proxy is running"), "{status}");
    assert!(status.contains("12375"), "{status}");

    // Usage, run form: the address is there, up, before the command runs.
    let out = ok(docker(
        &host,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.1/24",
            img,
            "sh",
            "-c",
            "grep ^1$ /sys/class/net/ethwe/carrier && ip -4 addr show ethwe",
        ],
    ));
    assert_eq!(
        ethwe_v4(&out),
        vec![("10.2.1.1".parse().unwrap(), 24)],
        "{out}"
    );

    // Usage, create + start form.
    let name = cleanup.container("created");
    ok(docker(
        &host,
        &[
            "create",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=10.2.1.2/24",
            img,
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ],
    ));
    let out = ok(docker(&host, &["start", "-a", &name]));
    assert_eq!(
        ethwe_v4(&out),
        vec![("10.2.1.2".parse().unwrap(), 24)],
        "{out}"
    );

    // A legacy start that moves the container to the host's network (W-03): the proxy in its
    // container hands over the weavewait that does not wait, from the volume's host path.
    let legacy = cleanup.container("legacy");
    ok(docker(
        &host,
        &[
            "create",
            "--name",
            &legacy,
            "-e",
            "WEAVE_CIDR=10.2.1.3/24",
            img,
            "sh",
            "-c",
            "test ! -e /sys/class/net/ethwe",
        ],
    ));
    let body = r#"{"HostConfig":{"NetworkMode":"host"}}"#;
    let mut raw = support::Raw::tcp(host.trim_start_matches("tcp://"));
    raw.send(format!("POST /v1.20/containers/{legacy}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let (head, resp) = raw.read_response();
    assert!(
        head.starts_with("HTTP/1.1 204"),
        "{head}{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(ok(docker(DIRECT, &["wait", &legacy])).trim(), "0");

    // Per-command form, and an ordinary command through the proxy.
    let cfg = ok(s.weave(&["proxy-config"]));
    let ps = Command::new("docker")
        .arg(cfg.trim())
        .args(["ps", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(ps.status.success());
    assert!(String::from_utf8_lossy(&ps.stdout).contains("weaveproxy"));

    let logs = docker(DIRECT, &["logs", "weaveproxy"]);
    assert!(
        (logs.stdout + &logs.stderr).contains("listening on"),
        "docker logs weaveproxy shows the proxy's log"
    );

    ok(s.weave(&["stop-proxy"]));
    let status = ok(s.weave(&["status"]));
    assert!(status.contains("weave proxy is not running"), "{status}");
    let again = s.weave(&["stop-proxy"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("not running"), "{}", again.stderr);
}

/// `weave stop` takes the bridge and its FORWARD rule when nothing uses them, and keeps them
/// while a container is attached.
#[test]
fn weave_stop_removes_the_bridge_when_nothing_uses_it() {
    let s = Services::new();
    let mut cleanup = Cleanup::new();
    let bridge = std::path::Path::new("/sys/class/net/weave");
    let rule = || {
        Command::new("iptables")
            .args([
                "-w", "-C", "FORWARD", "-i", "weave", "-o", "weave", "-j", "ACCEPT",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok(s.weave(&["launch"]));
    ok(s.weave(&["launch-proxy"]));
    let host = docker_host_from_proxy_env(&s);
    let name = cleanup.container("attached");
    let run = ["run", "-d", "--name", &name, "-e", "WEAVE_CIDR=10.2.1.1/24"];
    ok(docker(
        &host,
        &[&run[..], &[support::image(), "sleep", "600"]].concat(),
    ));
    ok(s.weave(&["stop-proxy"]));
    let out = s.weave(&["stop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("attached"), "{}", out.stderr);
    assert!(
        bridge.exists() && rule(),
        "kept while a container is attached"
    );

    ok(docker(DIRECT, &["rm", "-f", &name]));
    ok(s.weave(&["launch"]));
    ok(s.weave(&["stop"]));
    assert!(!bridge.exists(), "the idle bridge is removed");
    assert!(!rule(), "and its FORWARD rule");
}

/// As Weave's script: stopping a service that is not running says so, and succeeds.
#[test]
fn stopping_what_is_not_running_says_so_and_succeeds() {
    let s = Services::new();
    for (cmd, says) in [
        ("stop-proxy", "Proxy is not running."),
        ("stop-dns", "weaveDNS is not running."),
        ("stop", "weave is not running."),
    ] {
        let out = s.weave(&[cmd]);
        assert_eq!(out.code, 0, "{cmd}: {}", out.stderr);
        assert_eq!(out.stderr.trim(), says, "{cmd}");
    }
}

/// After `eval "$(weave proxy-env)"` DOCKER_HOST names the proxy; `weave` runs its services
/// beside the daemon and still talks to the daemon, so stopping the proxy does not go through
/// it. WEAVE_DOCKER_HOST chooses another daemon, and an error names the address used.
#[test]
fn weave_talks_to_the_daemon_after_proxy_env() {
    let s = Services::new();
    ok(s.weave(&["launch-proxy"]));
    let host = docker_host_from_proxy_env(&s);
    let env = [("DOCKER_HOST", host.as_str())];
    let status = ok(s.weave_with(&["status"], &env));
    assert!(status.contains("weave proxy is running"), "{status}");
    ok(s.weave_with(&["ps"], &env));
    // Through the proxy, the stop waited out the proxy's 10 s shutdown and then failed.
    let started = Instant::now();
    ok(s.weave_with(&["stop-proxy"], &env));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop-proxy took {:?}",
        started.elapsed()
    );
    assert_ne!(
        docker(DIRECT, &["inspect", "weaveproxy"]).code,
        0,
        "stop-proxy removed the container"
    );
    // With the proxy gone, DOCKER_HOST points at nothing.
    ok(s.weave_with(&["launch-proxy"], &env));
    let status = ok(s.weave_with(&["status"], &env));
    assert!(status.contains("weave proxy is running"), "{status}");

    let nowhere = "unix:///nonexistent/docker.sock";
    let out = s.weave_with(&["ps"], &[("WEAVE_DOCKER_HOST", nowhere)]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(nowhere), "{}", out.stderr);
    ok(s.weave_with(&["stop-proxy"], &env));
}

/// A bad flag is one line at once, and no container is left (not one restart-looping under
/// the service's name). Most are refused by the service's own parser, run by the front end
/// before anything is created; a `--config` file is read in the container, so that one shows
/// the dead container being seen at once and removed.
#[test]
fn bad_launch_flags_fail_at_once_in_one_line_and_leave_no_container() {
    let s = Services::new();
    let pki = tls_support::Pki::new("badflags");
    let server = pki.server("server");
    let other = pki.client("other");
    let path = |p: &std::path::Path| p.display().to_string();
    let mismatch = [
        "launch-proxy".to_string(),
        "--tlsverify".into(),
        format!("--tlscacert={}", path(&server.ca)),
        format!("--tlscert={}", path(&server.cert)),
        format!("--tlskey={}", path(&other.key)),
    ];
    let words = |w: &str| w.split(' ').map(str::to_string).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, String)> = vec![
        (words("launch-proxy --bogus"), "--bogus".into()),
        (words("launch-proxy --workers 0"), "workers 0".into()),
        (words("launch-proxy --log-level loud"), "loud".into()),
        (mismatch.to_vec(), path(&other.key)),
        (
            words("launch-proxy --config /nonexistent/proxy.toml"),
            "weaveproxy failed to start: weaveproxy: configuration: config file /nonexistent/proxy.toml does not exist".into(),
        ),
        (words("launch-dns --upstream notanip"), "notanip".into()),
        (words("launch --ipalloc-range 10.0.0.0/33"), "10.0.0.0/33".into()),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let container = match args[0] {
            "launch-proxy" => "weaveproxy",
            "launch-dns" => "weavedns",
            _ => "weave",
        };
        let started = Instant::now();
        let out = s.weave(&args);
        let took = started.elapsed();
        assert_ne!(out.code, 0, "{args:?}: {}", out.stdout);
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(lines[0].contains(&needle), "{args:?}: {}", out.stderr);
        assert_ne!(
            docker(DIRECT, &["inspect", container]).code,
            0,
            "{args:?} left container {container}"
        );
    }
}

/// `-H unix:///DIR/weave.sock`: the socket is on the host (its directory, made if missing, is
/// mounted into the proxy's container), proxy-env names it, and stop-proxy takes it away.
#[test]
fn launch_proxy_on_a_unix_socket_of_the_host() {
    let s = Services::new();
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::path::Path::new("/tmp").join(support::unique("sock"));
    let _remove = RemoveDir(dir.clone());
    let sock = dir.join("weave.sock");
    let host = format!("unix://{}", sock.display());

    let started = Instant::now();
    ok(s.weave(&["launch-proxy", "-H", &host]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "launch-proxy took {:?}",
        started.elapsed()
    );
    assert_eq!(docker_host_from_proxy_env(&s), host);
    assert_eq!(
        support::run_ethwe_v4(&host, "10.2.1.1/24"),
        vec![("10.2.1.1".parse().unwrap(), 24)]
    );
    ok(s.weave(&["stop-proxy"]));
    assert!(!sock.exists(), "stop-proxy leaves {}", sock.display());

    // An address another process holds: the launch fails (the address answering is not the
    // proxy being ready), and neither the launch nor a stop removes the other's socket.
    let busy = dir.join("busy.sock");
    let _other = std::os::unix::net::UnixListener::bind(&busy).unwrap();
    let started = Instant::now();
    let out = s.weave(&["launch-proxy", "-H", &format!("unix://{}", busy.display())]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("another process"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(
        docker(DIRECT, &["inspect", "weaveproxy"]).code,
        0,
        "no container left"
    );
    ok(s.weave(&["stop-proxy"]));
    assert!(busy.exists(), "the other process's socket is kept");

    // `tcp://:PORT` is every address, as for the daemon; port 0 is refused before launching.
    let port = support::free_port();
    ok(s.weave(&["launch-proxy", "-H", &format!("tcp://:{port}")]));
    ok(s.weave(&["stop-proxy"]));
    let out = s.weave(&["launch-proxy", "-H", "tcp://127.0.0.1:0"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("give the port"), "{}", out.stderr);
}

/// `weave status | head -1` ends like other CLIs whose reader went away (SIGPIPE), not with a
/// panic. The first form closes the reader before weave starts, so every write meets it.
#[test]
fn output_into_a_closed_pipe_is_sigpipe_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_weave"))
        .arg("status")
        .stdin(std::process::Stdio::null())
        .stdout(write)
        .output()
        .expect("run weave");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);

    let pipeline = format!(
        "set -o pipefail; '{}' status | head -1",
        env!("CARGO_BIN_EXE_weave")
    );
    let out: support::Out = Command::new("bash")
        .args(["-c", &pipeline])
        .output()
        .expect("bash")
        .into();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!([0, 141].contains(&out.code), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

/// The image is FROM scratch with static binaries, and small (issue: ≤ 10 MiB).
#[test]
fn product_image_is_static_and_small() {
    let s = Services::new();
    let size: u64 = ok(docker(
        DIRECT,
        &["image", "inspect", "-f", "{{.Size}}", &s.image],
    ))
    .trim()
    .parse()
    .unwrap();
    assert!(size <= 10 * 1024 * 1024, "image is {size} bytes");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image");
    for bin in ["weaveproxy", "weavewait"] {
        let out = Command::new("file").arg(root.join(bin)).output().unwrap();
        let kind = String::from_utf8_lossy(&out.stdout);
        assert!(kind.contains("static"), "{bin}: {kind}");
    }
    // The front end is the same binary, by name, in the image too.
    let out = ok(docker(
        DIRECT,
        &[
            "run",
            "--rm",
            "--entrypoint",
            "/weaveproxy",
            &s.image,
            "weave",
            "--version",
        ],
    ));
    assert!(out.starts_with("weave "), "{out}");
}

#[test]
fn launch_proxy_without_the_image_names_the_build_command() {
    let s = Services::new();
    let out = s.weave_with(
        &["launch-proxy"],
        &[("WEAVEPROXY_IMAGE", "wpt-no-such-image:latest")],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("wpt-no-such-image") && out.stderr.contains("scripts/build-image"),
        "{}",
        out.stderr
    );
    assert_eq!(
        docker(DIRECT, &["inspect", "weaveproxy"]).code,
        1,
        "no container is left behind"
    );
}

/// Seed, "Automatic IP address assignment", with our own network service and nothing else.
#[test]
fn launch_and_with_ipam_allocate_release_and_fail_clearly() {
    let s = Services::new();
    let mut cleanup = Cleanup::new();
    let img = support::image();
    let range: Ipv4Addr = "10.44.0.0".parse().unwrap();

    // The seed's second host (`weave launch host1`) needs Weave Net's router: said plainly.
    let peer = s.weave(&["launch", "host1"]);
    assert_ne!(peer.code, 0);
    assert!(peer.stderr.contains("single-host"), "{}", peer.stderr);
    assert_ne!(
        docker(DIRECT, &["inspect", "weave"]).code,
        0,
        "nothing launched"
    );

    let id = ok(s.weave(&["launch", "--ipalloc-range", "10.44.0.0/16"]));
    assert_eq!(id.trim().len(), 64, "{id}");
    let again = s.weave(&["launch"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already running"), "{}", again.stderr);
    ok(s.weave(&["launch-proxy", "--with-ipam"]));
    let host = docker_host_from_proxy_env(&s);

    // --with-ipam: a plain `docker run`, no options at all, is attached.
    let out = ok(docker(
        &host,
        &["run", "--rm", img, "ip", "-4", "addr", "show", "ethwe"],
    ));
    let got = ethwe_v4(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert!(in_subnet(got[0].0, range, 16), "{out}");

    // Blank WEAVE_CIDR and net: allocate; WEAVE_CIDR=none is hands off.
    let out = ok(docker(
        &host,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=net:10.44.7.0/24",
            img,
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ],
    ));
    let got = ethwe_v4(&out);
    assert!(
        in_subnet(got[0].0, "10.44.7.0".parse().unwrap(), 24),
        "{out}"
    );
    let out = docker(
        &host,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=none",
            img,
            "ip",
            "link",
            "show",
            "ethwe",
        ],
    );
    assert_ne!(out.code, 0, "WEAVE_CIDR=none gets no ethwe: {}", out.stdout);

    // Two running containers hold distinct addresses; `weave ps` lists them with MAC and address.
    let mut held = Vec::new();
    for n in ["ps1", "ps2"] {
        let name = cleanup.container(n);
        ok(docker(
            &host,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "-e",
                "WEAVE_CIDR=",
                img,
                "sleep",
                "600",
            ],
        ));
        let out = ok(docker(
            &host,
            &["exec", &name, "ip", "-4", "addr", "show", "ethwe"],
        ));
        held.push(ethwe_v4(&out)[0].0);
    }
    assert_ne!(held[0], held[1]);
    let ps = ok(s.weave(&["ps"]));
    for ip in &held {
        let line = ps
            .lines()
            .find(|l| l.contains(&format!("{ip}/16")))
            .unwrap_or_else(|| panic!("weave ps lacks {ip}: {ps}"));
        assert_eq!(
            line.split_whitespace().nth(1).map(|m| m.len()),
            Some(17),
            "{line}"
        );
    }
    let status = ok(s.weave(&["status"]));
    assert!(
        status.contains("weave network service is running") && status.contains("10.44.0.0/16"),
        "{status}"
    );

    // 20 parallel runs in a /27, all alive at once, never share an address.
    let names: Vec<String> = (0..20)
        .map(|i| cleanup.container(&format!("par{i}")))
        .collect();
    let runs: Vec<_> = names
        .iter()
        .map(|name| {
            support::docker_cmd(
                &host,
                &[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "-e",
                    "WEAVE_CIDR=net:10.44.1.0/27",
                    img,
                    "sleep",
                    "600",
                ],
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker run")
        })
        .collect();
    for r in runs {
        ok(r.wait_with_output().expect("wait").into());
    }
    let mut seen = HashSet::new();
    for name in &names {
        let got = ethwe_v4(&ok(docker(
            &host,
            &["exec", name, "ip", "-4", "addr", "show", "ethwe"],
        )));
        assert_eq!(got.len(), 1, "{name}");
        assert!(in_subnet(got[0].0, "10.44.1.0".parse().unwrap(), 27));
        assert!(seen.insert(got[0].0), "{} handed out twice", got[0].0);
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    ok(docker(&host, &rm));

    // Churn: 50 sequential `run --rm` in a /28 (14 addresses) all succeed: every address comes
    // back when its container goes.
    for i in 0..50 {
        let out = docker(
            &host,
            &[
                "run",
                "--rm",
                "-e",
                "WEAVE_CIDR=net:10.44.2.0/28",
                img,
                "true",
            ],
        );
        assert_eq!(out.code, 0, "run {i} of 50: {}", out.stderr);
    }

    // The network service gone: an address that needs it fails with the fix in one line, and
    // nothing is left running.
    ok(s.weave(&["stop"]));
    let name = cleanup.container("norouter");
    let out = docker(
        &host,
        &["run", "--name", &name, "-e", "WEAVE_CIDR=", img, "true"],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("weave launch"), "{}", out.stderr);
    let running = docker(DIRECT, &["inspect", "-f", "{{.State.Running}}", &name]);
    assert_ne!(
        running.stdout.trim(),
        "true",
        "no container is left running"
    );
}

/// compose.yaml brings up the services; a user's compose project through the proxy gets
/// `ethwe` where it asks for the bridge network, and is left alone on its project network.
#[test]
fn compose_up_runs_the_services_and_user_projects_work_through_the_proxy() {
    let s = Services::new();
    let img = support::image();
    let root = env!("CARGO_MANIFEST_DIR");
    let compose = |host: &str, dir: &str, project: &str, args: &[&str]| -> Out {
        Command::new("docker-compose")
            .current_dir(dir)
            .env("DOCKER_HOST", host)
            .env("WEAVEPROXY_IMAGE", &s.image)
            .env("COMPOSE_PROJECT_NAME", project)
            .args(args)
            .output()
            .expect("docker-compose")
            .into()
    };
    let services = support::unique("svc");
    struct Down<'a>(&'a dyn Fn());
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let down_services = || {
        let _ = compose(DIRECT, root, &services, &["down", "-v"]);
    };
    let _down = Down(&down_services);
    // weaveDNS forwards to a resolver of the test's own: nothing asked leaves the machine.
    let upstream = support::fake_dns::FakeUpstream::start();
    let override_dir = tempfile::tempdir().unwrap();
    let override_file = override_dir.path().join("test.yaml");
    std::fs::write(
        &override_file,
        format!(
            "services:\n  weavedns:\n    command: [\"--upstream\", \"{}\"]\n",
            upstream.addr
        ),
    )
    .unwrap();
    let files = ["-f", "compose.yaml", "-f", override_file.to_str().unwrap()];
    let up = compose(
        DIRECT,
        root,
        &services,
        &[&files[..], &["up", "-d"]].concat(),
    );
    assert_eq!(up.code, 0, "{}", up.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:12375").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let proxy = "tcp://127.0.0.1:12375";

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "version: '2'\nservices:\n  a:\n    image: {img}\n    command: sleep 600\n    network_mode: bridge\n    environment:\n      WEAVE_CIDR: 10.2.5.1/24\n  b:\n    image: {img}\n    command: sleep 600\n    network_mode: bridge\n    environment:\n      WEAVE_CIDR: 10.2.5.2/24\n  c:\n    image: {img}\n    command: sleep 600\n    environment:\n      WEAVE_CIDR: 10.2.5.3/24\n"
        ),
    )
    .unwrap();
    let project = support::unique("proj").replace('-', "");
    let d = dir.path().to_str().unwrap().to_string();
    let down_project = || {
        let _ = compose(proxy, &d, &project, &["down", "-v"]);
        let _ = compose(DIRECT, &d, &project, &["down", "-v"]);
    };
    let _down_project = Down(&down_project);
    let up = compose(proxy, &d, &project, &["up", "-d"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let container = |svc: &str| {
        let out = compose(proxy, &d, &project, &["ps", "-q", svc]);
        out.stdout.trim().to_string()
    };
    let a = container("a");
    let out = ok(docker(
        proxy,
        &["exec", &a, "ip", "-4", "addr", "show", "ethwe"],
    ));
    assert_eq!(ethwe_v4(&out), vec![("10.2.5.1".parse().unwrap(), 24)]);
    let out = ok(docker(
        proxy,
        &["exec", &a, "ping", "-c", "1", "-W", "5", "10.2.5.2"],
    ));
    assert!(out.contains("1 packets received"), "{out}");
    // By name too: b's container name is its host name in the weave domain, in weaveDNS.
    let b = container("b");
    let b_name = ok(docker(DIRECT, &["inspect", "-f", "{{.Name}}", &b]));
    let b_name = b_name.trim().trim_start_matches('/');
    for name in [b_name.to_string(), format!("{b_name}.weave.local")] {
        let out = ok(docker(
            proxy,
            &["exec", &a, "ping", "-c", "1", "-W", "5", &name],
        ));
        assert!(out.contains("(10.2.5.2)"), "{name}: {out}");
    }
    assert!(
        !upstream.asked().iter().any(|q| q.contains("weave.local")),
        "weave names are answered by weaveDNS: {:?}",
        upstream.asked()
    );
    // On the project's own network the proxy hands off, and says why.
    let c = container("c");
    let out = docker(proxy, &["exec", &c, "ip", "link", "show", "ethwe"]);
    assert_ne!(out.code, 0, "c is on the project network: no ethwe");
    let logs = docker(DIRECT, &["logs", "weaveproxy"]);
    assert!(
        (logs.stdout + &logs.stderr).contains("user-defined network"),
        "the proxy logs why it left c alone"
    );
    let run = compose(
        proxy,
        &d,
        &project,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.5.9/24",
            "a",
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("10.2.5.9/24"), "{}", run.stdout);
    let down = compose(proxy, &d, &project, &["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
}
