//! The proxy is indistinguishable from the daemon: the docker CLI through the proxy (tcp and
//! unix listeners) against the same command straight at the daemon.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

fn both(p: &ProxyProc) -> [String; 2] {
    [p.tcp.clone(), p.unix_host()]
}

#[test]
fn version_info_ps_images_match() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let img = image();
    let name = c.container("ps");
    ok(docker(DIRECT, &["create", "--name", &name, img, "true"]));
    let filter = format!("name={name}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["version", "--format", "{{json .Server}}"],
        vec![
            "info",
            "--format",
            "{{.ID}} {{.Name}} {{.Driver}} {{.OperatingSystem}}",
        ],
        vec!["ps", "-a", "--filter", &filter, "--no-trunc"],
        vec!["images", "-a", "--no-trunc", img],
        vec!["inspect", &name],
    ];
    for host in both(&p) {
        for args in &cases {
            let direct = docker(DIRECT, args);
            let proxied = docker(&host, args);
            assert_eq!(direct.code, 0, "{args:?}: {}", direct.stderr);
            assert_eq!(proxied.stdout, direct.stdout, "{args:?} through {host}");
            assert_eq!(proxied.code, direct.code);
        }
    }
}

#[test]
fn list_response_over_64k() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let big = c.image("big");
    // Each change line stays under the daemon's 64 KiB line limit.
    let labels: Vec<String> = (0..4)
        .map(|i| format!("LABEL big{i}={}", "x".repeat(30 * 1024)))
        .collect();
    ok(docker(
        DIRECT,
        &[
            "commit",
            "--change",
            &labels[0],
            "--change",
            &labels[1],
            "--change",
            &labels[2],
            "--change",
            &labels[3],
            &{
                let n = c.container("bigsrc");
                ok(docker(DIRECT, &["create", "--name", &n, image(), "true"]));
                n
            },
            &big,
        ],
    ));
    let args = ["images", "-a", "--no-trunc", "--format", "{{json .}}"];
    same_while_stable(
        || ok(docker(DIRECT, &args)),
        || ok(docker(&p.tcp, &args)),
        |out| {
            let mut lines: Vec<&str> = out.lines().collect();
            lines.sort();
            lines.join("\n")
        },
    );
    // The raw API answer is over 64 KiB and arrives whole and unchanged.
    let req = b"GET /images/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n";
    let body = |mut raw: Raw| {
        raw.send(req);
        raw.read_response().1
    };
    let dbody = same_while_stable(
        || body(raw_direct()),
        || body(Raw::tcp(&p.addr())),
        |b: &Vec<u8>| list_by_id(b),
    );
    assert!(dbody.len() > 64 * 1024, "list is {} bytes", dbody.len());
    assert!(String::from_utf8_lossy(&dbody).contains(&format!("{big}\"")));
}

/// The daemon sorts lists by creation time, in either order within one second; a list answer
/// is compared as the set of its entries.
fn list_by_id(body: &[u8]) -> Vec<serde_json::Value> {
    let serde_json::Value::Array(mut list) = serde_json::from_slice(body).expect("a JSON list")
    else {
        panic!("not a JSON list: {}", String::from_utf8_lossy(body));
    };
    list.sort_by_key(|e| e["Id"].as_str().unwrap_or("").to_string());
    list
}

/// Other tests share the daemon and change its lists: the proxied answer must equal the direct
/// one whenever the direct one did not change around it. Returns the direct answer.
fn same_while_stable<T, K: PartialEq + std::fmt::Debug>(
    direct: impl Fn() -> T,
    proxied: impl Fn() -> T,
    key: impl Fn(&T) -> K,
) -> T {
    for _ in 0..20 {
        let before = direct();
        let via = proxied();
        let after = direct();
        if key(&before) == key(&after) {
            assert_eq!(key(&via), key(&before), "the proxy changed the answer");
            return before;
        }
    }
    panic!("the daemon's answer never held still for three requests");
}

#[test]
fn run_output_streams_and_exit_codes() {
    let p = ProxyProc::start(&[]);
    let img = image();
    for host in both(&p) {
        let out = docker(&host, &["run", "--rm", img, "echo", "hello world"]);
        assert_eq!((out.code, out.stdout.as_str()), (0, "hello world\n"));

        let args = [
            "run",
            "--rm",
            img,
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ];
        let (d, pr) = (docker(DIRECT, &args), docker(&host, &args));
        assert_eq!(pr.stdout, "to-out\n");
        assert_eq!(pr.stdout, d.stdout);
        assert!(pr.stderr.contains("to-err") && !pr.stdout.contains("to-err"));

        for code in [0, 3, 42] {
            let cmd = format!("exit {code}");
            let out = docker(&host, &["run", "--rm", img, "sh", "-c", &cmd]);
            assert_eq!(out.code, code, "{}", out.stderr);
        }

        let out = docker_stdin(&host, &["run", "-i", "--rm", img, "cat"], b"data\n");
        assert_eq!((out.code, out.stdout.as_str()), (0, "data\n"));
    }
}

#[test]
fn stdin_half_close_keeps_output_flowing() {
    let p = ProxyProc::start(&[]);
    // The container reads stdin to EOF and only then writes: the EOF must reach it while its
    // output direction stays open.
    let input: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let out = docker_stdin(
        &p.tcp,
        &[
            "run",
            "-i",
            "--rm",
            image(),
            "sh",
            "-c",
            "wc -l; echo after-eof",
        ],
        &input,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["200000", "after-eof"]
    );
}

#[test]
fn run_tty_under_pseudo_terminal() {
    let p = ProxyProc::start(&[]);
    let cmd = format!(
        "DOCKER_HOST={} docker run -t --rm {} sh -c 'tty >/dev/null && echo is-a-tty; exit 4'",
        p.tcp,
        image()
    );
    let out: Out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    assert!(out.stdout.contains("is-a-tty\r"), "{out:?}");
    assert_eq!(out.code, 4);
}

#[test]
fn detached_attach_exec_logs() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let img = image();
    let name = c.container("att");
    ok(docker(
        &p.tcp,
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
    let out = docker(&p.tcp, &["attach", &name]);
    assert_eq!(out.stdout, "attached-out\n");
    assert_eq!(out.code, 5);

    let name = c.container("exec");
    ok(docker(
        &p.tcp,
        &["run", "-d", "--name", &name, img, "sleep", "600"],
    ));
    for host in both(&p) {
        assert_eq!(ok(docker(&host, &["exec", &name, "echo", "hi"])), "hi\n");
        // Without -i: a program that prints and reads nothing (other proxies printed nothing).
        let d = ok(docker(DIRECT, &["exec", &name, "ls", "/"]));
        assert_eq!(ok(docker(&host, &["exec", &name, "ls", "/"])), d);
        let out = docker_stdin(&host, &["exec", "-i", &name, "cat"], b"via exec\n");
        assert_eq!(ok(out), "via exec\n");
        let out = docker(&host, &["exec", &name, "sh", "-c", "exit 9"]);
        assert_eq!(out.code, 9);
    }
}

#[test]
fn logs_follow_streams_before_container_ends() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("logs");
    ok(docker(
        DIRECT,
        &[
            "run",
            "-d",
            "--name",
            &name,
            image(),
            "sh",
            "-c",
            "echo first; sleep 4; echo second",
        ],
    ));
    let mut child = docker_cmd(&p.tcp, &["logs", "-f", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "first");
    let running = ok(docker(
        DIRECT,
        &["inspect", "-f", "{{.State.Running}}", &name],
    ));
    assert_eq!(
        running.trim(),
        "true",
        "first line must arrive while the container runs"
    );
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    assert!(child.wait().unwrap().success());
}

#[test]
fn events_stream_reports_create_promptly() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("ev");
    let filter = format!("container={name}");
    let mut child = docker_cmd(
        &p.tcp,
        &[
            "events",
            "--filter",
            &filter,
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let created = Instant::now();
    ok(docker(
        DIRECT,
        &["create", "--name", &name, image(), "true"],
    ));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let waited = created.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line, format!("create {name}"));
    // The event is streamed, not held until the stream ends.
    assert!(waited < Duration::from_secs(3), "event took {waited:?}");
}

#[test]
fn cp_build_stats_commit_rm() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let img = image();
    let name = c.container("cp");
    ok(docker(
        &p.tcp,
        &["run", "-d", "--name", &name, img, "sleep", "600"],
    ));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.txt");
    let payload: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&src, &payload).unwrap();
    ok(docker(
        &p.tcp,
        &["cp", src.to_str().unwrap(), &format!("{name}:/tmp/in.txt")],
    ));
    let back = dir.path().join("back.txt");
    ok(docker(
        &p.tcp,
        &["cp", &format!("{name}:/tmp/in.txt"), back.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), payload);

    let stats = ok(docker(
        &p.tcp,
        &["stats", "--no-stream", "--format", "{{.Name}}", &name],
    ));
    assert_eq!(stats.trim(), name);

    let committed = c.image("committed");
    ok(docker(&p.tcp, &["commit", &name, &committed]));
    let out = ok(docker(
        &p.tcp,
        &["run", "--rm", &committed, "cat", "/tmp/in.txt"],
    ));
    assert_eq!(out, payload);

    let built = c.image("built");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {img}\nCOPY data /data\nRUN wc -c < /data > /size\nCMD [\"cat\", \"/size\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.path().join("data"), vec![b'a'; 3_000_000]).unwrap();
    ok(docker(
        &p.tcp,
        &["build", "-q", "-t", &built, ctx.path().to_str().unwrap()],
    ));
    assert_eq!(
        ok(docker(&p.tcp, &["run", "--rm", &built])).trim(),
        "3000000"
    );

    ok(docker(&p.tcp, &["rm", "-f", &name]));
    let gone = docker(DIRECT, &["inspect", &name]);
    assert_ne!(gone.code, 0);
}

#[test]
fn keep_alive_connection_serves_many_requests() {
    let p = ProxyProc::start(&[]);
    // W-08: a chunked or long list, then another request on the same connection; no added
    // `Connection: close`.
    let mut r = Raw::tcp(&p.addr());
    let mut d = raw_direct();
    for path in [
        "/images/json?all=1",
        "/version",
        "/_ping",
        "/containers/json?all=1",
    ] {
        let req = format!(
            "GET /v{}{path} HTTP/1.1\r\nHost: docker\r\n\r\n",
            api_version()
        );
        r.send(req.as_bytes());
        d.send(req.as_bytes());
        let (ph, pb) = r.read_response();
        let (dh, db) = d.read_response();
        assert!(ph.starts_with("HTTP/1.1 200 OK\r\n"), "{ph}");
        assert!(
            !ph.to_ascii_lowercase().contains("connection: close"),
            "{ph}"
        );
        // Lists change as other tests run; their framing must not differ.
        let framing = |h: &str| {
            strip_date(h)
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(framing(&ph), framing(&dh), "{path}");
        if path.contains("json") {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&pb).is_ok(),
                "{path}"
            );
        } else {
            assert_eq!(pb, db, "{path}");
        }
    }
}

fn strip_date(head: &str) -> String {
    head.lines()
        .filter(|l| !l.starts_with("Date:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn head_requests_and_unversioned_paths() {
    let p = ProxyProc::start(&[]);
    for path in ["/_ping", "/v1.41/_ping"] {
        let req = format!("HEAD {path} HTTP/1.1\r\nHost: docker\r\n\r\n");
        let mut r = Raw::tcp(&p.addr());
        r.send(req.as_bytes());
        let head = r.read_head();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        // Still usable after a HEAD: no body bytes were left in the stream.
        r.send(b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n");
        let (h, b) = r.read_response();
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert!(String::from_utf8_lossy(&b).contains("ApiVersion"));
    }
}

/// Creates an exec that prints three lines; returns its id.
fn exec_create(container: &str) -> String {
    let body =
        r#"{"AttachStdout":true,"AttachStderr":true,"Cmd":["sh","-c","echo a; echo b; echo c"]}"#;
    let req = format!(
        "POST /v{}/containers/{container}/exec HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        api_version(),
        body.len()
    );
    let mut d = raw_direct();
    d.send(req.as_bytes());
    let (h, b) = d.read_response();
    assert!(h.starts_with("HTTP/1.1 201"), "{h}");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

fn exec_start(raw: &mut Raw, id: &str, upgrade: bool) -> (String, Vec<u8>) {
    let body = r#"{"Detach":false,"Tty":false}"#;
    let up = if upgrade {
        "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    } else {
        ""
    };
    let req = format!(
        "POST /v{}/exec/{id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n{up}Content-Length: {}\r\n\r\n{body}",
        api_version(),
        body.len()
    );
    raw.send(req.as_bytes());
    let head = raw.read_head();
    let rest = raw.read_to_end();
    (head, rest)
}

/// Demultiplexes Docker's stdcopy framing into stdout text.
fn stdout_of(stream: &[u8]) -> String {
    let mut out = String::new();
    let mut s = stream;
    while s.len() >= 8 {
        let len = u32::from_be_bytes([s[4], s[5], s[6], s[7]]) as usize;
        if s[0] == 1 {
            out.push_str(&String::from_utf8_lossy(&s[8..8 + len]));
        }
        s = &s[8 + len..];
    }
    out
}

#[test]
fn hijack_head_is_the_daemons() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("hj");
    sleeper(DIRECT, &name, &[]);
    // W-10/W-12: `101 UPGRADED` with the daemon's headers, strict CRLF, output never in the head.
    let (dhead, dbody) = exec_start(&mut raw_direct(), &exec_create(&name), true);
    let (phead, pbody) = exec_start(&mut Raw::tcp(&p.addr()), &exec_create(&name), true);
    assert!(dhead.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{dhead}");
    assert_eq!(phead, dhead, "head through the proxy, byte for byte");
    assert_eq!(stdout_of(&pbody), "a\nb\nc\n");
    assert_eq!(stdout_of(&dbody), "a\nb\nc\n");
    // The same over the unix listener.
    let (uhead, ubody) = exec_start(&mut Raw::unix(&p.unix), &exec_create(&name), true);
    assert_eq!(uhead, dhead);
    assert_eq!(stdout_of(&ubody), "a\nb\nc\n");
}

#[test]
fn hijack_without_upgrade_headers_streams_both_ways() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("legacy");
    ok(docker(
        DIRECT,
        &[
            "create",
            "-i",
            "--name",
            &name,
            image(),
            "sh",
            "-c",
            "read x; echo got-$x; sleep 1; echo done",
        ],
    ));
    // An old client: plain POST attach, no Upgrade, stdin bytes in the same write as the head.
    let req = format!(
        "POST /v{}/containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n",
        api_version()
    );
    let mut r = Raw::tcp(&p.addr());
    r.send(req.as_bytes());
    let head = r.read_head();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("application/vnd.docker"), "{head}");
    ok(docker(DIRECT, &["start", &name]));
    r.send(b"early\n");
    r.shutdown_write();
    let out = stdout_of(&r.read_to_end());
    assert_eq!(out, "got-early\ndone\n");
}

#[test]
fn early_bytes_after_upgrade_head_are_kept() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("early");
    ok(docker(
        DIRECT,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            &name,
            image(),
            "sh",
            "-c",
            "read x; echo got-$x",
        ],
    ));
    let req = format!(
        "POST /v{}/containers/{name}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nfirst-bytes\n",
        api_version()
    );
    let mut r = Raw::tcp(&p.addr());
    r.send(req.as_bytes());
    let head = r.read_head();
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    let out = stdout_of(&r.read_to_end());
    assert_eq!(out, "got-first-bytes\n");
}

#[test]
fn bollard_through_tcp_and_unix_listeners() {
    let p = ProxyProc::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let direct = bollard::Docker::connect_with_unix(
            "/var/run/docker.sock",
            10,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
        let want = direct.version().await.unwrap();
        let tcp = bollard::Docker::connect_with_http(
            &format!("http://{}", p.addr()),
            10,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
        let unix = bollard::Docker::connect_with_unix(
            p.unix.to_str().unwrap(),
            10,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
        for client in [tcp, unix] {
            let v = client.version().await.unwrap();
            assert_eq!(v.version, want.version);
            assert_eq!(v.api_version, want.api_version);
            let info = client.info().await.unwrap();
            assert!(info.id.is_some());
            client.inspect_image(image()).await.unwrap();
        }
    });
}

#[test]
fn malformed_host_header_on_unix_socket() {
    let p = ProxyProc::start(&[]);
    // W-18: pre-1.10 clients send the socket path as Host.
    let mut r = Raw::unix(&p.unix);
    r.send(
        format!(
            "GET /version HTTP/1.1\r\nHost: {}\r\n\r\n",
            p.unix.display()
        )
        .as_bytes(),
    );
    let (h, b) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(String::from_utf8_lossy(&b).contains("ApiVersion"));
    // And the same header straight at the daemon is refused, which is why it is rewritten.
    let mut d = raw_direct();
    d.send(b"GET /version HTTP/1.1\r\nHost: /var/run/docker.sock\r\n\r\n");
    let (dh, _) = d.read_response();
    assert!(dh.starts_with("HTTP/1.1 400"), "{dh}");
}

#[test]
fn malformed_http_gets_400_and_listener_lives() {
    let p = ProxyProc::start(&[]);
    let mut r = Raw::tcp(&p.addr());
    r.send(b"THIS IS NOT HTTP\r\n\r\n");
    let head = r.read_head();
    assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");
    let mut r = Raw::tcp(&p.addr());
    r.send(b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n");
    assert!(r.read_head().starts_with("HTTP/1.1 400"));
    assert_eq!(
        ok(docker(
            &p.tcp,
            &["version", "--format", "{{.Server.APIVersion}}"]
        ))
        .trim(),
        api_version()
    );
}

#[test]
fn daemon_unreachable_is_a_docker_error_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let d = format!("unix://{}", sock.display());
    let p = ProxyProc::start(&["-D", &d]);
    let started = Instant::now();
    let mut r = Raw::tcp(&p.addr());
    r.send(b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n");
    let (h, b) = r.read_response();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(h.starts_with("HTTP/1.1 502"), "{h}");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(&d), "{msg}");
    let out = docker(&p.tcp, &["ps"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&d), "{}", out.stderr);
    // The daemon comes back (here: its socket appears at the address).
    std::os::unix::fs::symlink("/var/run/docker.sock", &sock).unwrap();
    ok(docker(&p.tcp, &["ps"]));
}

#[test]
fn disconnecting_clients_leak_nothing() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("leak");
    sleeper(DIRECT, &name, &[]);
    // Warm up the runtime's own descriptors.
    ok(docker(&p.tcp, &["version"]));
    std::thread::sleep(Duration::from_millis(200));
    let before = p.open_fds();
    for _ in 0..20 {
        // A stream that never ends on its own, cut by the client.
        let mut r = Raw::tcp(&p.addr());
        r.send(
            format!(
                "GET /v{}/events HTTP/1.1\r\nHost: docker\r\n\r\n",
                api_version()
            )
            .as_bytes(),
        );
        assert!(r.read_head().starts_with("HTTP/1.1 200"));
        let mut s = Raw::tcp(&p.addr());
        s.send(
            format!(
                "GET /v{}/containers/{name}/stats HTTP/1.1\r\nHost: docker\r\n\r\n",
                api_version()
            )
            .as_bytes(),
        );
        assert!(s.read_head().starts_with("HTTP/1.1 200"));
        let mut h = Raw::tcp(&p.addr());
        let id = exec_create(&name);
        h.send(format!("POST /v{}/exec/{id}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}", api_version()).as_bytes());
        assert!(h.read_head().starts_with("HTTP/1.1 101"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = p.open_fds();
    while now > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = p.open_fds();
    }
    assert!(now <= before, "fds before {before}, after {now}");
    ok(docker(&p.tcp, &["version"]));
}

#[test]
fn stats_stream_cancelled_then_connection_reused() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("stats");
    sleeper(DIRECT, &name, &[]);
    let mut r = Raw::tcp(&p.addr());
    r.send(
        format!(
            "GET /v{}/containers/{name}/stats?stream=false HTTP/1.1\r\nHost: docker\r\n\r\n",
            api_version()
        )
        .as_bytes(),
    );
    let (h, b) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
    r.send(b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n");
    let (h, b) = r.read_response();
    assert!(
        h.starts_with("HTTP/1.1 200"),
        "no stray bytes before the next answer: {h}"
    );
    assert!(String::from_utf8_lossy(&b).contains("ApiVersion"));
}

#[test]
fn sigterm_finishes_in_flight_and_removes_socket() {
    let mut p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("term");
    ok(docker(
        DIRECT,
        &[
            "create",
            "--name",
            &name,
            image(),
            "sh",
            "-c",
            "sleep 2; echo late",
        ],
    ));
    // A request in flight when the signal arrives: a wait for a container that runs 2 s.
    ok(docker(DIRECT, &["start", &name]));
    let mut r = Raw::tcp(&p.addr());
    r.send(format!("POST /v{}/containers/{name}/wait HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n", api_version()).as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let sock = p.unix.clone();
    let addr = p.addr();
    let code = std::thread::scope(|s| {
        let t = s.spawn(|| p.terminate());
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "still accepting after SIGTERM"
        );
        t.join().unwrap()
    });
    let (h, b) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(String::from_utf8_lossy(&b).contains("StatusCode"));
    assert_eq!(code, Some(0));
    assert!(!sock.exists(), "unix socket removed on clean shutdown");
}

/// A client that shuts down its sending side once its requests are out still gets every
/// answer, as from the daemon; and the daemon sees the half-close, so a stream it ends for
/// such a client (`events`) ends through the proxy too.
#[test]
fn half_closed_clients_get_their_answers() {
    let p = ProxyProc::start(&[]);
    let sock = p.unix_host();
    let sock = Path::new(sock.trim_start_matches("unix://"));
    let v = api_version();
    let exchange = |mut r: Raw, req: &str| -> String {
        r.set_read_timeout(Duration::from_secs(10));
        r.send(req.as_bytes());
        r.shutdown_write();
        String::from_utf8_lossy(&r.read_to_end()).into_owned()
    };
    let statuses = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("HTTP/"))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let ping10 = "GET /_ping HTTP/1.0\r\n\r\n".to_string();
    let pipelined = format!(
        "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\nGET /v{v}/version HTTP/1.1\r\nHost: docker\r\n\r\nGET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
    );
    for req in [&ping10, &pipelined] {
        let direct = exchange(raw_direct(), req);
        for (how, through) in [
            ("tcp", exchange(Raw::tcp(&p.addr()), req)),
            ("unix", exchange(Raw::unix(sock), req)),
        ] {
            assert!(!statuses(&direct).is_empty(), "direct: {direct:?}");
            assert_eq!(statuses(&through), statuses(&direct), "{how}: {through:?}");
            assert_eq!(
                through.matches("\r\n\r\nOK").count(),
                direct.matches("\r\n\r\nOK").count(),
                "{how}: {through:?}"
            );
        }
    }
    assert!(exchange(Raw::tcp(&p.addr()), &pipelined).contains("ApiVersion"));

    // An events stream: the daemon ends it for a half-closed client; the proxy passes that on
    // rather than holding the stream (and its daemon connection) open.
    let events = format!("GET /v{v}/events HTTP/1.1\r\nHost: docker\r\n\r\n");
    let started = Instant::now();
    let direct = exchange(raw_direct(), &events);
    let direct_took = started.elapsed();
    let started = Instant::now();
    let through = exchange(Raw::tcp(&p.addr()), &events);
    assert_eq!(statuses(&through), statuses(&direct), "{through:?}");
    assert!(
        started.elapsed() < direct_took + Duration::from_secs(5),
        "the stream ended directly after {direct_took:?}, through the proxy only after {:?}",
        started.elapsed()
    );
}

/// Clients that vanish from streams on which nothing happens (no event, no log line) free
/// their daemon connections at once, not at the stream's next write.
#[test]
fn vanished_clients_of_idle_streams_free_their_daemon_connections() {
    let p = ProxyProc::start(&[]);
    ok(docker(&p.tcp, &["version"]));
    std::thread::sleep(Duration::from_millis(200));
    let before = p.open_fds();
    let v = api_version();
    // Only events about a container that does not exist: none will come.
    let req = format!(
        "GET /v{v}/events?filters=%7B%22container%22%3A%5B%22wpt-none-{}%22%5D%7D HTTP/1.1\r\nHost: docker\r\n\r\n",
        std::process::id()
    );
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut r = Raw::tcp(&p.addr());
        r.send(req.as_bytes());
        assert!(r.read_head().starts_with("HTTP/1.1 200"));
        open.push(r);
    }
    assert!(
        p.open_fds() >= before + 20,
        "each stream holds two descriptors"
    );
    drop(open);
    wait_until("the proxy closes the streams' daemon connections", || {
        p.open_fds() <= before
    });
}
