//! The seed's "Securing the docker communication with TLS": the proxy with dockerd's TLS flags,
//! the docker CLI with `--tlsverify` (and with `DOCKER_TLS_VERIFY=1` + `~/.docker`) through it,
//! every refusal, the unix listener beside it, a daemon that speaks only TLS behind `-D`, and
//! `weave launch-proxy --tlsverify` with `weave proxy-env`. Certificates are made in the test.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tls_support::*;

/// Runs `cmd`, failing the test if it has not finished within `limit`: a hijacked stream that
/// does not end would otherwise hang the suite. (A guard against hangs, not a speed check.)
fn output_within(mut cmd: Command, limit: Duration) -> Out {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_within(child, limit, &format!("{cmd:?}"))
}

fn wait_within(mut child: std::process::Child, limit: Duration, what: &str) -> Out {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        code: status.code().unwrap_or(-1),
    }
}

/// `cmd` (a shell command line) under a pseudo-terminal, with `input` typed into it once the
/// command has had a moment to come up. Its stdin stays open until it ends, as a terminal's
/// would.
fn under_pty(cmd: &str, input: &str) -> Out {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().unwrap();
    if !input.is_empty() {
        std::thread::sleep(Duration::from_secs(1));
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = wait_within(child, Duration::from_secs(60), cmd);
    drop(stdin);
    out
}

/// `docker` with `client`'s TLS flags at `host`, then `rest` (shell words), under a terminal:
/// its output shows `shows`, and it returns the container's exit code.
fn tty_session(client: &Files, host: &str, rest: &str, input: &str, shows: &str, code: i32) {
    let flags = client.cli_flags().join(" ");
    let out = under_pty(&format!("docker {flags} -H {host} {rest}"), input);
    assert!(out.stdout.contains(shows), "{rest}: {out:?}");
    assert_eq!(out.code, code, "{rest}: {out:?}");
}

fn tls_proxy(server: &Files, extra: &[&str]) -> ProxyProc {
    let mut args = server.proxy_flags();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ProxyProc::start(&args)
}

fn refused(out: &Out) -> bool {
    out.code != 0 && !out.stderr.is_empty()
}

#[test]
fn tlsverify_cli_ps_run_attach_exec_and_the_plain_unix_listener() {
    let pki = Pki::new("main");
    let server = pki.server("server");
    let client = pki.client("client");
    let p = tls_proxy(&server, &[]);
    let mut c = Cleanup::new();
    let img = image();

    let ps = ok(docker_tls(&p.tcp, &client, &["ps"]));
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    let v = ok(docker_tls(
        &p.tcp,
        &client,
        &["version", "--format", "{{.Server.APIVersion}}"],
    ));
    assert_eq!(v.trim(), api_version());

    let out = docker_tls(
        &p.tcp,
        &client,
        &[
            "run",
            "--rm",
            img,
            "sh",
            "-c",
            "echo via-tls; echo err >&2; exit 3",
        ],
    );
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("via-tls\n", 3),
        "{}",
        out.stderr
    );

    // run -ti: a terminal both ends; the CLI returns with the container's exit code.
    tty_session(
        &client,
        &p.tcp,
        &format!("run -ti --rm {img} sh -c 'tty >/dev/null && echo is-a-tty; exit 4'"),
        "",
        "is-a-tty\r",
        4,
    );

    // attach to a detached container, and the interactive form under a terminal.
    let name = c.container("tls-att");
    ok(docker_tls(
        &p.tcp,
        &client,
        &[
            "run",
            "-d",
            "--name",
            &name,
            img,
            "sh",
            "-c",
            "sleep 2; echo attached-out; exit 5",
        ],
    ));
    let out = docker_tls(&p.tcp, &client, &["attach", &name]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("attached-out\n", 5),
        "{}",
        out.stderr
    );

    let name = c.container("tls-att-ti");
    ok(docker_tls(
        &p.tcp,
        &client,
        &["run", "-dti", "--name", &name, img, "sh"],
    ));
    tty_session(
        &client,
        &p.tcp,
        &format!("attach {name}"),
        "echo typed-$((6*7)); exit 6\n",
        "typed-42",
        6,
    );

    // exec -i: stdin's end reaches the process, its output still arrives; exec -ti as well.
    let name = c.container("tls-exec");
    ok(docker_tls(
        &p.tcp,
        &client,
        &["run", "-d", "--name", &name, img, "sleep", "600"],
    ));
    let out = output_with_stdin(
        docker_tls_cmd(
            &p.tcp,
            &client.cli_flags(),
            &["exec", "-i", &name, "sh", "-c", "cat; echo after-eof"],
        ),
        b"via exec\n",
    );
    assert_eq!(ok(out), "via exec\nafter-eof\n");
    let out = docker_tls(&p.tcp, &client, &["exec", &name, "sh", "-c", "exit 9"]);
    assert_eq!(out.code, 9);
    tty_session(
        &client,
        &p.tcp,
        &format!("exec -ti {name} sh -c 'tty >/dev/null && echo exec-tty; exit 7'"),
        "",
        "exec-tty",
        7,
    );

    // The unix listener beside it stays plain.
    let ps = ok(docker(&p.unix_host(), &["ps", "--format", "{{.Names}}"]));
    assert!(ps.contains(&name), "{ps}");
    assert_eq!(
        ok(docker_stdin(
            &p.unix_host(),
            &["exec", "-i", &name, "cat"],
            b"plain unix\n"
        )),
        "plain unix\n"
    );
}

#[test]
fn seed_form_docker_tls_verify_and_home_dot_docker() {
    let pki = Pki::new("seed");
    let server = pki.server("server");
    let client = pki.client("client");
    let p = tls_proxy(&server, &[]);
    let home = tempfile::tempdir().unwrap();
    client.install(&home.path().join(".docker"));
    let run = |args: &[&str]| -> Out {
        docker_cmd(&p.tcp, args)
            .env("HOME", home.path())
            .env("DOCKER_TLS_VERIFY", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    let v = ok(run(&["version", "--format", "{{.Server.APIVersion}}"]));
    assert_eq!(v.trim(), api_version());
    assert!(ok(run(&["ps"])).starts_with("CONTAINER ID"));
    let out = run(&["run", "--rm", image(), "sh", "-c", "echo seed; exit 2"]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("seed\n", 2),
        "{}",
        out.stderr
    );
    // Without DOCKER_TLS_VERIFY the same client speaks plain HTTP, and is turned away.
    let out: Out = docker_cmd(&p.tcp, &["ps"])
        .env("HOME", home.path())
        .output()
        .unwrap()
        .into();
    assert!(refused(&out), "{out:?}");
}

/// W-14: with TLS configured, every tcp listener requires it, however many `-H` there are;
/// unix listeners stay plain.
#[test]
fn w14_tls_on_every_tcp_listener_and_the_refusals() {
    let pki = Pki::new("w14");
    let server = pki.server("server");
    let client = pki.client("client");
    let other_ca = Pki::new("other");
    let other = other_ca.client("stranger");
    let second = format!("tcp://127.0.0.1:{}", free_port());
    let p = tls_proxy(&server, &["-H", &second]);
    for tcp in [p.tcp.as_str(), second.as_str()] {
        assert!(ok(docker_tls(tcp, &client, &["ps"])).starts_with("CONTAINER ID"));

        // Plain HTTP gets dockerd's own answer, which the CLI shows.
        let out = docker(tcp, &["ps"]);
        assert!(refused(&out), "{out:?}");
        assert!(
            out.stderr
                .contains("Client sent an HTTP request to an HTTPS server"),
            "{}",
            out.stderr
        );
        let mut raw = Raw::tcp(tcp.trim_start_matches("tcp://"));
        raw.send(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = String::from_utf8_lossy(&raw.read_to_end()).into_owned();
        assert!(
            answer.starts_with("HTTP/1.0 400 Bad Request\r\n"),
            "{answer}"
        );

        // TLS without a client certificate.
        let no_cert = vec![
            "--tls".to_string(),
            format!("--tlscacert={}", client.ca.display()),
        ];
        let out: Out = docker_tls_cmd(tcp, &no_cert, &["ps"])
            .output()
            .unwrap()
            .into();
        assert!(refused(&out), "{out:?}");

        // A certificate from another CA.
        let out = docker_tls(
            tcp,
            &Files {
                ca: client.ca.clone(),
                ..other.clone()
            },
            &["ps"],
        );
        assert!(refused(&out), "{out:?}");
        assert!(
            out.stderr.to_lowercase().contains("certificate"),
            "{}",
            out.stderr
        );
    }
    // The listener is still serving after all that, and says why it refused.
    assert!(ok(docker_tls(&p.tcp, &client, &["ps"])).starts_with("CONTAINER ID"));
    let log = p.log_text();
    assert!(log.contains("refused"), "{log}");
    assert!(ok(docker(&p.unix_host(), &["ps"])).starts_with("CONTAINER ID"));
}

#[test]
fn tls_without_verify_encrypts_without_asking_for_a_certificate() {
    let pki = Pki::new("enc");
    let server = pki.server("server");
    let p = ProxyProc::start(&[
        "--tls",
        "--tlscert",
        server.cert.to_str().unwrap(),
        "--tlskey",
        server.key.to_str().unwrap(),
    ]);
    // The CLI wants a CA file even when it does not verify.
    let flags = vec![
        "--tls".to_string(),
        format!("--tlscacert={}", server.ca.display()),
    ];
    let out: Out = docker_tls_cmd(&p.tcp, &flags, &["ps"])
        .output()
        .unwrap()
        .into();
    assert!(out.stdout.starts_with("CONTAINER ID"), "{out:?}");
    assert!(refused(&docker(&p.tcp, &["ps"])));
}

#[test]
fn files_default_to_docker_cert_path_then_home_dot_docker() {
    let pki = Pki::new("defaults");
    let server = pki.server("server");
    let client = pki.client("client");
    let certs = tempfile::tempdir().unwrap();
    server.install(certs.path());
    let p = ProxyProc::start_env(
        &["--tlsverify"],
        &[("DOCKER_CERT_PATH", certs.path().to_str().unwrap())],
        true,
    );
    assert!(ok(docker_tls(&p.tcp, &client, &["ps"])).starts_with("CONTAINER ID"));
    drop(p);

    let home = tempfile::tempdir().unwrap();
    server.install(&home.path().join(".docker"));
    let p = ProxyProc::start_env(
        &["--tlsverify"],
        &[("HOME", home.path().to_str().unwrap())],
        true,
    );
    assert!(ok(docker_tls(&p.tcp, &client, &["ps"])).starts_with("CONTAINER ID"));
    assert!(refused(&docker(&p.tcp, &["ps"])));
}

/// Starts the proxy with `args` (and `env`, as user `uid` when given) and expects it to refuse:
/// exit 2, one line on stderr that contains `needle`, and nothing listening.
fn refuses_to_start(args: &[&str], env: &[(&str, &str)], uid: Option<u32>, needle: &str) {
    require_docker();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weaveproxy"));
    cmd.args(["-H", &format!("tcp://{addr}"), "--log-target", "stderr"])
        .args(args)
        .env_remove("DOCKER_CERT_PATH")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let out = output_within(cmd, Duration::from_secs(20));
    assert_eq!(out.code, 2, "{args:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {:?}", out.stderr);
    assert!(lines[0].starts_with("weaveproxy: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} is listening"
    );
}

#[test]
fn unusable_tls_files_stop_the_proxy_with_one_line() {
    let pki = Pki::new("refuse");
    let server = pki.server("server");
    let other = pki.server("other");
    let (ca, cert, key) = (
        server.ca.to_str().unwrap(),
        server.cert.to_str().unwrap(),
        server.key.to_str().unwrap(),
    );
    let missing = pki.dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let v = |ca: &str, cert: &str, key: &str| {
        vec![
            "--tlsverify".to_string(),
            format!("--tlscacert={ca}"),
            format!("--tlscert={cert}"),
            format!("--tlskey={key}"),
        ]
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (v(ca, missing, key), format!("{missing}: No such file")),
        (v(ca, cert, missing), format!("{missing}: No such file")),
        (v(missing, cert, key), format!("{missing}: No such file")),
        (
            v(ca, garbage, key),
            format!("{garbage}: no PEM certificate"),
        ),
        (
            v(ca, cert, garbage),
            format!("{garbage}: no PEM private key"),
        ),
        (
            v(ca, cert, other.key.to_str().unwrap()),
            format!(
                "key {} does not belong to certificate {cert}",
                other.key.display()
            ),
        ),
        (
            vec![format!("--tlscert={cert}"), format!("--tlskey={key}")],
            "refusing to listen without TLS".into(),
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refuses_to_start(&args, &[], None, needle);
    }
    // Defaults that are not there: ~/.docker of an empty home.
    let home = tempfile::tempdir().unwrap();
    let expected = home.path().join(".docker/cert.pem");
    refuses_to_start(
        &["--tlsverify"],
        &[("HOME", home.path().to_str().unwrap())],
        None,
        &format!("{}: No such file", expected.display()),
    );
    // Unreadable: a key that its user may not read.
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("key.pem");
    std::fs::copy(&server.key, &locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [&server.ca, &server.cert] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let locked = locked.to_str().unwrap().to_string();
    refuses_to_start(
        &v(ca, cert, &locked)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[("HOME", "/")],
        Some(65534),
        &format!("{locked}: Permission denied"),
    );
    // The daemon side is checked the same way.
    refuses_to_start(
        &[
            "-D",
            "tcp://127.0.0.1:1",
            "--docker-tlsverify",
            &format!("--docker-tlscacert={missing}"),
            &format!("--docker-tlscert={cert}"),
            &format!("--docker-tlskey={key}"),
        ],
        &[],
        None,
        &format!("{missing}: No such file"),
    );
}

/// The log once the proxy has bound every listener (its first port answers before that).
fn start_up_log(p: &ProxyProc) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = p.log_text();
        if log.contains("listening on") || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn plaintext_tcp_beyond_loopback_is_warned_about() {
    let all = format!("tcp://0.0.0.0:{}", free_port());
    let p = ProxyProc::start(&["-H", &all]);
    let log = start_up_log(&p);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("root on this host"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(all.trim_start_matches("tcp://")),
        "{log}"
    );
    drop(p);

    let pki = Pki::new("warn");
    let all = format!("tcp://0.0.0.0:{}", free_port());
    let p = tls_proxy(&pki.server("server"), &["-H", &all]);
    let log = start_up_log(&p);
    assert!(!log.contains("root on this host"), "{log}");
    assert!(log.contains("(TLS, client certificates verified)"), "{log}");
}

/// A proxy (plain listeners) in front of the TLS daemon at `addr`, with `files` for it.
fn daemon_proxy(files: &Files, addr: &str) -> ProxyProc {
    let args = files.daemon_flags(addr);
    ProxyProc::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn daemon_behind_tls_reached_through_dash_d() {
    let pki = Pki::new("daemon");
    let daemon = TlsDaemon::start(&pki.server("daemon"), &pki.ca);
    let to_daemon = pki.client("proxy-to-daemon");
    let listen = pki.server("proxy");
    let client = pki.client("user");
    let mut args = listen.proxy_flags();
    args.extend(to_daemon.daemon_flags(&daemon.addr));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = ProxyProc::start(&args);
    let mut c = Cleanup::new();
    let img = image();

    // TLS all the way: client → proxy → daemon.
    assert!(ok(docker_tls(&p.tcp, &client, &["ps"])).starts_with("CONTAINER ID"));
    let out = docker_tls(
        &p.tcp,
        &client,
        &["run", "--rm", img, "sh", "-c", "echo behind-tls; exit 3"],
    );
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("behind-tls\n", 3),
        "{}",
        out.stderr
    );
    // The proxy's own daemon client (inspect on start) goes over TLS too: attach works.
    let out = ok(docker(
        &p.unix_host(),
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.7.1/24",
            img,
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ],
    ));
    assert!(out.contains("inet 10.2.7.1/24"), "{out}");
    // Hijacked streams over the TLS upstream: half-close and exit codes.
    let name = c.container("tls-daemon-exec");
    ok(docker(
        &p.unix_host(),
        &["run", "-d", "--name", &name, img, "sleep", "600"],
    ));
    let out = docker_stdin(
        &p.unix_host(),
        &["exec", "-i", &name, "sh", "-c", "cat; echo after-eof"],
        b"up\n",
    );
    assert_eq!(ok(out), "up\nafter-eof\n");
    tty_session(
        &client,
        &p.tcp,
        &format!("run -ti --rm {img} sh -c 'echo tty-behind-tls; exit 4'"),
        "",
        "tty-behind-tls",
        4,
    );
    assert!(daemon.handshakes() > 0);
    drop(p);

    // A proxy whose certificate the daemon does not accept gets nothing from it.
    let stranger_ca = Pki::new("stranger");
    let stranger = stranger_ca.client("stranger");
    let p = daemon_proxy(
        &Files {
            ca: pki.ca.clone(),
            ..stranger.clone()
        },
        &daemon.addr,
    );
    let out = docker(&p.unix_host(), &["ps"]);
    assert!(refused(&out), "{out:?}");
    assert!(out.stderr.contains(&daemon.addr), "{}", out.stderr);
    drop(p);

    // Nor does a proxy trust a daemon whose certificate another CA signed.
    let p = daemon_proxy(
        &Files {
            ca: stranger.ca.clone(),
            ..to_daemon.clone()
        },
        &daemon.addr,
    );
    let out = docker(&p.unix_host(), &["ps"]);
    assert!(refused(&out), "{out:?}");
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
}

#[test]
fn weave_launch_proxy_tlsverify_and_proxy_env() {
    let s = Services::new();
    let pki = Pki::new("launch");
    let server = pki.server("server");
    let client = pki.client("client");
    let img = image();

    // A missing file stops the front end before any container is made.
    let out = s.weave(&[
        "launch-proxy",
        "--tlsverify",
        "--tlscacert=/nonexistent/ca.pem",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/nonexistent/ca.pem"), "{}", out.stderr);
    assert_ne!(docker(DIRECT, &["inspect", "weaveproxy"]).code, 0);

    // Both flag forms, as in the seed.
    let id = ok(s.weave(&[
        "launch-proxy",
        "--tlsverify",
        &format!("--tlscacert={}", server.ca.display()),
        "--tlscert",
        server.cert.to_str().unwrap(),
        &format!("--tlskey={}", server.key.display()),
    ]));
    assert_eq!(id.trim().len(), 64, "{id}");
    let mounts = ok(docker(
        DIRECT,
        &[
            "inspect",
            "weaveproxy",
            "--format",
            "{{range .Mounts}}{{.Source}}>{{.Destination}}:{{.RW}} {{end}}",
        ],
    ));
    for (host, inside) in [
        (&server.ca, "/tls/ca.pem"),
        (&server.cert, "/tls/cert.pem"),
        (&server.key, "/tls/key.pem"),
    ] {
        let want = format!("{}>{inside}:false", host.display());
        assert!(mounts.contains(&want), "{want} in {mounts}");
    }

    let env = ok(s.weave(&["proxy-env"]));
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        vec![
            "export DOCKER_HOST=tcp://127.0.0.1:12375",
            "export DOCKER_TLS_VERIFY=1"
        ],
        "{env}"
    );
    assert_eq!(
        ok(s.weave(&["proxy-config"])).trim(),
        "--tlsverify -H=tcp://127.0.0.1:12375"
    );

    // The seed: ~/.docker holds the client's files, then eval "$(weave proxy-env)".
    let home = tempfile::tempdir().unwrap();
    client.install(&home.path().join(".docker"));
    let script = format!(
        "eval \"$({} proxy-env)\" && docker version --format '{{{{.Server.APIVersion}}}}' && docker run --rm {img} sh -c 'echo seed-tls; exit 3'",
        env!("CARGO_BIN_EXE_weave")
    );
    let out: Out = Command::new("sh")
        .args(["-c", &script])
        .env("HOME", home.path())
        .env("WEAVEPROXY_IMAGE", &s.image)
        .env("DOCKER_HOST", DIRECT)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .output()
        .unwrap()
        .into();
    assert_eq!(
        out.stdout,
        format!("{}\nseed-tls\n", api_version()),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 3);
    // And nothing gets in without TLS.
    assert!(refused(&docker("tcp://127.0.0.1:12375", &["ps"])));

    // The client's environment as proxy-env sets it names the TLS proxy, not the daemon:
    // `weave` still talks to the daemon, and so sees the proxy and can stop and launch it.
    let certs = home.path().join(".docker");
    let env = [
        ("DOCKER_HOST", "tcp://127.0.0.1:12375"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
    ];
    let status = ok(s.weave_with(&["status"], &env));
    assert!(status.contains("weave proxy is running"), "{status}");
    ok(s.weave_with(&["ps"], &env));
    ok(s.weave_with(&["stop-proxy"], &env));
    assert_ne!(
        docker(DIRECT, &["inspect", "weaveproxy"]).code,
        0,
        "stop-proxy removed the container"
    );
    let mut launch = vec!["launch-proxy".to_string()];
    launch.extend(server.proxy_flags());
    let launch: Vec<&str> = launch.iter().map(String::as_str).collect();
    ok(s.weave_with(&launch, &env));
    ok(s.weave_with(&["stop-proxy"], &env));
}
