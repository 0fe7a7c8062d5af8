//! Containers created and started through the proxy join the weave network before their
//! application starts (seed: "Usage"), and everything else about them behaves as without it.

mod support;

use std::time::{Duration, Instant};

use support::*;

const CHECK_ETHWE_UP: &[&str] = &["grep", "^1$", "/sys/class/net/ethwe/carrier"];

#[test]
fn seed_usage_run_form() {
    let p = ProxyProc::start(&[]);
    for host in [p.tcp.clone(), p.unix_host()] {
        let out = ok(docker(
            &host,
            &[
                "run",
                "--rm",
                "-e",
                "WEAVE_CIDR=10.2.1.1/24",
                image(),
                "ip",
                "-4",
                "addr",
                "show",
                "ethwe",
            ],
        ));
        assert!(out.contains("inet 10.2.1.1/24"), "{out}");
        // Up with carrier when the application's first instruction runs.
        let mut args = vec!["run", "--rm", "-e", "WEAVE_CIDR=10.2.1.1/24", image()];
        args.extend_from_slice(CHECK_ETHWE_UP);
        assert_eq!(ok(docker(&host, &args)), "1\n");
    }
    // The host end is on the proxy's bridge.
    let out = String::from_utf8(
        std::process::Command::new("ip")
            .args(["link", "show", "master", &p.bridge])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(out.is_empty() || out.contains("vethwepl"), "{out}");
}

#[test]
fn seed_usage_create_then_start() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("cs");
    let mut args = vec![
        "create",
        "--name",
        &name,
        "-e",
        "WEAVE_CIDR=10.2.1.1/24",
        image(),
    ];
    args.extend_from_slice(CHECK_ETHWE_UP);
    let id = ok(docker(&p.tcp, &args));
    assert_eq!(id.trim().len(), 64, "{id}");
    let out = docker(&p.tcp, &["start", "-a", id.trim()]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "1\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn several_cidrs() {
    let p = ProxyProc::start(&[]);
    let out = ok(docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.1/24 10.2.2.1/24 ip:10.2.3.1/16",
            image(),
            "ip",
            "-4",
            "addr",
            "show",
            "ethwe",
        ],
    ));
    for a in ["inet 10.2.1.1/24", "inet 10.2.2.1/24", "inet 10.2.3.1/16"] {
        assert!(out.contains(a), "{a} missing in {out}");
    }
    // Given twice, the last one counts, as in the container's own environment.
    let out = ok(docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.62/24",
            "-e",
            "WEAVE_CIDR=10.2.1.63/24",
            image(),
            "sh",
            "-c",
            "echo $WEAVE_CIDR; ip -4 addr show ethwe",
        ],
    ));
    assert!(out.starts_with("10.2.1.63/24\n"), "{out}");
    assert!(
        out.contains("inet 10.2.1.63/24") && !out.contains("10.2.1.62"),
        "{out}"
    );
}

#[test]
fn rm_tty_and_exit_codes_behave_as_without_proxy() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("rm");
    for code in [0, 3, 42] {
        let cmd = format!("grep -q ^1$ /sys/class/net/ethwe/carrier && exit {code}");
        let out = docker(
            &p.tcp,
            &[
                "run",
                "--rm",
                "--name",
                &name,
                "-e",
                "WEAVE_CIDR=10.2.1.1/24",
                image(),
                "sh",
                "-c",
                &cmd,
            ],
        );
        assert_eq!(out.code, code, "{}", out.stderr);
        assert_ne!(
            docker(DIRECT, &["inspect", &name]).code,
            0,
            "--rm leaves nothing"
        );
    }
    let out = docker_stdin(
        &p.tcp,
        &[
            "run",
            "-i",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.1/24",
            image(),
            "cat",
        ],
        b"through weavewait\n",
    );
    assert_eq!(ok(out), "through weavewait\n");

    let cmd = format!(
        "DOCKER_HOST={} docker run -ti --rm -e WEAVE_CIDR=10.2.1.1/24 {} sh -c 'tty >/dev/null && cat /sys/class/net/ethwe/carrier; exit 6'",
        p.tcp,
        image()
    );
    let out: Out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into();
    assert!(out.stdout.contains("1\r"), "{out:?}");
    assert_eq!(out.code, 6);
}

#[test]
fn stop_delivers_term_to_the_application() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("term");
    ok(docker(
        &p.tcp,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=",
            "-e",
            "WEAVE_CIDR=10.2.1.5/24",
            image(),
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    ));
    // The application is PID 1 (weavewait exec'd it): it gets the TERM.
    assert_eq!(
        ok(docker(&p.tcp, &["exec", &name, "cat", "/proc/1/cmdline"]))
            .replace('\0', " ")
            .trim(),
        "sh -c trap 'exit 7' TERM; while :; do sleep 0.1; done"
    );
    ok(docker(&p.tcp, &["stop", "-t", "10", &name]));
    assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "7");
}

#[test]
fn entrypoint_and_cmd_merge_like_docker() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let src = c.container("src");
    ok(docker(DIRECT, &["create", "--name", &src, image(), "true"]));
    let commit = |c: &mut Cleanup, name: &str, changes: &[&str]| {
        let img = c.image(name);
        let mut args = vec!["commit"];
        for ch in changes {
            args.push("--change");
            args.push(ch);
        }
        args.push(&src);
        args.push(&img);
        ok(docker(DIRECT, &args));
        img
    };
    // W-01: A = ENTRYPOINT + CMD, B = ENTRYPOINT only, C = an entrypoint to be replaced, D = CMD only.
    let a = commit(
        &mut c,
        "a",
        &[
            r#"ENTRYPOINT ["grep"]"#,
            r#"CMD ["^1$", "/sys/class/net/ethwe/carrier"]"#,
        ],
    );
    let b = commit(&mut c, "b", &[r#"ENTRYPOINT ["grep"]"#, "CMD []"]);
    let cc = commit(&mut c, "c", &[r#"ENTRYPOINT ["/bin/false"]"#]);
    let d = commit(
        &mut c,
        "d",
        &[r#"CMD ["grep", "^1$", "/sys/class/net/ethwe/carrier"]"#],
    );
    let e = "-eWEAVE_CIDR=10.2.1.1/24";
    assert_eq!(ok(docker(&p.tcp, &["run", "--rm", e, &a])), "1\n");
    assert_eq!(
        ok(docker(
            &p.tcp,
            &["run", "--rm", e, &b, "^1$", "/sys/class/net/ethwe/carrier"]
        )),
        "1\n"
    );
    assert_eq!(
        ok(docker(
            &p.tcp,
            &[
                "run",
                "--rm",
                e,
                "--entrypoint=grep",
                &cc,
                "^1$",
                "/sys/class/net/ethwe/carrier"
            ]
        )),
        "1\n"
    );
    assert_eq!(ok(docker(&p.tcp, &["run", "--rm", e, &d])), "1\n");
    // --entrypoint without arguments: the image's CMD is dropped, as Docker does.
    let n = c.container("epnocmd");
    ok(docker(
        &p.tcp,
        &["create", "--name", &n, e, "--entrypoint", "echo", &a],
    ));
    assert_eq!(
        inspect(&n, "{{json .Config.Entrypoint}} {{json .Config.Cmd}}"),
        r#"["/w/w","echo"] null"#
    );

    // Through the API, an explicitly empty entrypoint keeps the image's out.
    let n = c.container("emptyep");
    let body = format!(r#"{{"Image":"{a}","Entrypoint":[],"Env":["WEAVE_CIDR=10.2.1.1/24"]}}"#);
    let mut r = Raw::tcp(&p.addr());
    r.send(format!("POST /containers/create?name={n} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let (h, _) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 201"), "{h}");
    assert_eq!(
        inspect(&n, "{{json .Config.Entrypoint}} {{json .Config.Cmd}}"),
        r#"["/w/w"] ["^1$","/sys/class/net/ethwe/carrier"]"#
    );

    // A committed proxied container is never wrapped twice.
    let c1 = c.container("c1");
    sleeper(&p.tcp, &c1, &[e]);
    let img2 = c.image("img2");
    ok(docker(DIRECT, &["commit", &c1, &img2]));
    let c2 = c.container("c2");
    ok(docker(
        &p.tcp,
        &["create", "--name", &c2, "-eWEAVE_CIDR=10.2.1.2/24", &img2],
    ));
    assert_eq!(inspect(&c2, "{{json .Config.Entrypoint}}"), r#"["/w/w"]"#);
    assert_eq!(
        inspect(&c2, "{{json .Config.Entrypoint}}"),
        inspect(&img2, "{{json .Config.Entrypoint}}")
    );
    ok(docker(&p.tcp, &["start", &c2]));
    assert_eq!(
        ok(docker(
            &p.tcp,
            &["exec", &c2, "cat", "/sys/class/net/ethwe/carrier"]
        )),
        "1\n"
    );
    // Run through the proxy without asking for the weave network, such an image still runs
    // (its entrypoint is weavewait), at once and without ethwe.
    for env in [vec![], vec!["-e", "WEAVE_CIDR=none"]] {
        let started = Instant::now();
        let mut args = vec!["run", "--rm"];
        args.extend(env.iter().copied());
        args.extend([img2.as_str(), "sh", "-c", "echo ran; ls /sys/class/net"]);
        let out = ok(docker(&p.tcp, &args));
        assert!(
            out.starts_with("ran\n") && !out.contains("ethwe"),
            "{env:?}: {out}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{env:?}: waited"
        );
    }
}

#[test]
fn no_command_and_missing_program_errors() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    // An image with neither CMD nor ENTRYPOINT: the daemon's own error, as without the proxy.
    let src = c.container("nocmd-src");
    ok(docker(DIRECT, &["create", "--name", &src, image(), "true"]));
    let bare = c.image("bare");
    let export = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("docker -H {DIRECT} export {src} | docker -H {DIRECT} import - {bare}"),
        ])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let direct = docker(DIRECT, &["create", &bare]);
    let proxied = docker(&p.tcp, &["create", "-e", "WEAVE_CIDR=10.2.1.1/24", &bare]);
    assert_ne!(direct.code, 0);
    assert_eq!(proxied.code, direct.code);
    assert!(
        direct.stderr.contains("No command specified"),
        "{}",
        direct.stderr
    );
    assert!(
        proxied.stderr.contains("No command specified"),
        "{}",
        proxied.stderr
    );
    // `--entrypoint ""` clears the image's entrypoint, and Docker then takes no CMD from the
    // image either.
    let args = |cidr| vec!["run", "--rm", "-e", cidr, "--entrypoint", "", image()];
    let direct = docker(DIRECT, &args("WEAVE_CIDR=10.2.1.2/24"));
    let proxied = docker(&p.tcp, &args("WEAVE_CIDR=10.2.1.2/24"));
    assert_ne!(direct.code, 0);
    assert_eq!(proxied.code, direct.code, "{proxied:?}");
    assert!(
        proxied.stderr.contains("No command specified"),
        "{}",
        proxied.stderr
    );
    let with_cmd = |host| {
        let mut a = args("WEAVE_CIDR=10.2.1.2/24");
        a.extend(["echo", "given"]);
        ok(docker(host, &a))
    };
    assert_eq!(with_cmd(&p.tcp), with_cmd(DIRECT));

    // A program that is not there: Docker's wording, and the CLI's exit code for it.
    let out = docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.3/24",
            image(),
            "foo",
        ],
    );
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "{}",
        out.stderr
    );
}

#[test]
fn weavewait_is_the_only_mount_and_read_only() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("mnt");
    sleeper(&p.tcp, &name, &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    assert_eq!(
        inspect(
            &name,
            "{{len .Mounts}} {{range .Mounts}}{{.Destination}} {{.RW}}{{end}}"
        ),
        "1 /w/w false"
    );
    let out = docker(&p.tcp, &["exec", &name, "sh", "-c", "echo x > /w/w"]);
    assert_ne!(out.code, 0, "/w/w must be read-only");
    // The user's own mounts are kept beside it.
    let name = c.container("mnt2");
    let dir = tempfile::tempdir().unwrap();
    let vol = format!("{}:/data", dir.path().display());
    sleeper(&p.tcp, &name, &["-v", &vol, "-e", "WEAVE_CIDR=10.2.1.1/24"]);
    assert_eq!(inspect(&name, "{{len .Mounts}}"), "2");

    // A mount of the user's own where weavewait goes is an error to act on, not dropped.
    for mount in [vec!["-v", "/tmp:/w"], vec!["--tmpfs", "/w/x"]] {
        let name = c.container("mntw");
        let mut args = vec!["create", "--name", &name, "-e", "WEAVE_CIDR=10.2.1.1/24"];
        args.extend(mount.iter().copied());
        args.extend([image(), "true"]);
        let out = docker(&p.tcp, &args);
        assert_ne!(out.code, 0, "{mount:?}");
        assert!(
            out.stderr.contains("where weavewait goes (/w)"),
            "{mount:?}: {}",
            out.stderr
        );
        assert_ne!(
            docker(DIRECT, &["inspect", &name]).code,
            0,
            "nothing created"
        );
    }
}

#[test]
fn two_containers_ping_over_ethwe() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let a = c.container("pa");
    sleeper(&p.tcp, &a, &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    let out = docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.2/24",
            image(),
            "ping",
            "-c",
            "2",
            "-W",
            "3",
            "10.2.1.1",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2 packets received"), "{}", out.stdout);
}

#[test]
fn hands_off_containers_are_untouched() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let net = format!("{}-net", unique("n"));
    ok(docker(DIRECT, &["network", "create", &net]));
    struct Net(String);
    impl Drop for Net {
        fn drop(&mut self) {
            let _ = docker(DIRECT, &["network", "rm", &self.0]);
        }
    }
    let _net = Net(net.clone());
    let owner = c.container("owner");
    sleeper(DIRECT, &owner, &[]);
    let shared = format!("container:{owner}");
    let net_flag = format!("--network={net}");
    let shared_flag = format!("--network={shared}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["-e", "WEAVE_CIDR=none"],
        vec!["-e", "WEAVE_CIDR=10.2.1.1/24", "--network=host"],
        vec!["-e", "WEAVE_CIDR=10.2.1.1/24", &shared_flag],
        vec!["-e", "WEAVE_CIDR=10.2.1.1/24", &net_flag],
        vec![],
    ];
    let fmt = "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .HostConfig.Binds}} {{json .HostConfig.Dns}} {{.Config.Hostname}}";
    for flags in cases {
        let (d, pr) = (c.container("direct"), c.container("proxied"));
        let mut args = vec!["create", "--name", &d];
        args.extend(flags.iter().copied());
        args.extend([image(), "sh", "-c", "test ! -e /sys/class/net/ethwe"]);
        ok(docker(DIRECT, &args));
        args[2] = &pr;
        ok(docker(&p.tcp, &args));
        let (di, pi) = (inspect(&d, fmt), inspect(&pr, fmt));
        let di = di.replace(&d[..12.min(d.len())], "NAME");
        let pi = pi.replace(&pr[..12.min(pr.len())], "NAME");
        // Hostnames are container ids (different); compare the rest.
        let strip = |s: &str| {
            s.rsplit_once(' ')
                .map(|(a, _)| a.to_string())
                .unwrap_or_default()
        };
        assert_eq!(strip(&pi), strip(&di), "{flags:?}");
        let out = docker(&p.tcp, &["start", "-a", &pr]);
        assert_eq!(out.code, 0, "{flags:?}: {out:?}");
    }
    let log = p.log_text();
    assert!(log.contains("network mode host"), "{log}");
    assert!(
        log.contains(&format!("user-defined network \\\"{net}\\\""))
            || log.contains(&format!("user-defined network \"{net}\"")),
        "{log}"
    );
}

#[test]
fn invalid_weave_cidr_is_one_line_and_creates_nothing() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    for bad in [
        "invalid",
        "10.2.1.1/24 bogus",
        "net:10.2.300.0/24",
        "ip:10.2.1.1/33",
        // Addresses the kernel would take or refuse with a bare errno (a new user's findings).
        "0.0.0.0/0",
        "224.0.0.1/4",
        "127.0.0.1/8",
        "10.2.1.0/24",
        "10.2.1.255/24",
        "10.2.1.1/24 10.2.1.1/24",
    ] {
        let name = c.container("bad");
        let env = format!("WEAVE_CIDR={bad}");
        let out = docker(
            &p.tcp,
            &["run", "--rm", "--name", &name, "-e", &env, image(), "true"],
        );
        assert_ne!(out.code, 0);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("Error response from daemon"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].contains(&format!("invalid WEAVE_CIDR \"{bad}\"")),
            "{}",
            out.stderr
        );
        assert_ne!(
            docker(DIRECT, &["inspect", &name]).code,
            0,
            "nothing created for {bad}"
        );
    }
}

#[test]
fn restarts_are_reattached() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("restart");
    ok(docker(
        &p.tcp,
        &[
            "run",
            "-d",
            "--restart=always",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=10.2.1.9/24",
            image(),
            "sleep",
            "600",
        ],
    ));
    let carrier = |name: &str| {
        docker(
            DIRECT,
            &["exec", name, "cat", "/sys/class/net/ethwe/carrier"],
        )
        .stdout
            == "1\n"
    };
    assert!(carrier(&name));
    // Through the proxy, and straight at the daemon (only the event stream sees that one).
    ok(docker(&p.tcp, &["restart", "-t", "1", &name]));
    assert!(carrier(&name), "after proxied restart");
    ok(docker(DIRECT, &["restart", "-t", "1", &name]));
    wait_until("re-attach after direct restart", || carrier(&name));
    // The process killed from the host: the restart policy brings it back.
    let pid = inspect(&name, "{{.State.Pid}}");
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    wait_until("restart policy", || {
        inspect(&name, "{{.RestartCount}}") != "0" && inspect(&name, "{{.State.Running}}") == "true"
    });
    wait_until("re-attach after restart policy", || carrier(&name));
    let out = ok(docker(
        DIRECT,
        &["exec", &name, "ip", "-4", "addr", "show", "ethwe"],
    ));
    assert_eq!(out.matches("inet 10.2.1.9/24").count(), 1, "{out}");
}

#[test]
fn proxy_restart_attaches_running_containers_without_killing() {
    let mut p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let names: Vec<String> = (0..3).map(|i| c.container(&format!("boot{i}"))).collect();
    for (i, name) in names.iter().enumerate() {
        let cidr = format!("WEAVE_CIDR=10.2.1.{}/24", 20 + i);
        ok(docker(
            &p.tcp,
            &[
                "create",
                "--name",
                name,
                "-e",
                &cidr,
                "-e",
                "WEAVEWAIT_TIMEOUT=60",
                image(),
                "sleep",
                "600",
            ],
        ));
    }
    // Started behind the proxy's back while it is down: their weavewait waits.
    assert_eq!(p.terminate(), Some(0));
    for name in &names {
        ok(docker(DIRECT, &["start", name]));
    }
    std::thread::sleep(Duration::from_millis(300));
    p.restart_stopped();
    for name in &names {
        wait_until("attach at proxy start", || {
            docker(
                DIRECT,
                &["exec", name, "cat", "/sys/class/net/ethwe/carrier"],
            )
            .stdout
                == "1\n"
        });
        assert_eq!(inspect(name, "{{.State.Running}}"), "true");
    }
}

#[test]
fn exec_into_any_container_works() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    // W-38: a container the proxy did not set up.
    let plain = c.container("plain");
    sleeper(DIRECT, &plain, &[]);
    assert_eq!(ok(docker(&p.tcp, &["exec", &plain, "echo", "ok"])), "ok\n");
    let out = docker(&p.tcp, &["exec", "wpt-nosuch-container", "true"]);
    let direct = docker(DIRECT, &["exec", "wpt-nosuch-container", "true"]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr, direct.stderr);
    let woven = c.container("woven");
    sleeper(&p.tcp, &woven, &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    let out = ok(docker(
        &p.tcp,
        &["exec", &woven, "sh", "-c", "ip -4 addr show ethwe"],
    ));
    assert!(out.contains("10.2.1.1/24"), "{out}");
}

#[test]
fn raw_api_minimal_bodies_and_unversioned_paths() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let src = c.container("src");
    ok(docker(DIRECT, &["create", "--name", &src, image(), "true"]));
    let a = c.image("a");
    ok(docker(
        DIRECT,
        &[
            "commit",
            "--change",
            r#"ENTRYPOINT ["grep"]"#,
            "--change",
            r#"CMD ["^1$", "/sys/class/net/ethwe/carrier"]"#,
            &src,
            &a,
        ],
    ));
    // W-02/W-15: no HostConfig, no Cmd, no Entrypoint, unversioned path.
    for (i, prefix) in ["", "/v1.41"].iter().enumerate() {
        let name = c.container(&format!("min{i}"));
        let body = format!(
            r#"{{"Image":"{a}","Env":["WEAVE_CIDR=10.2.1.1/24"],"AttachStdout":true,"AttachStderr":true,"Tty":false}}"#
        );
        let mut r = Raw::tcp(&p.addr());
        r.send(format!("POST {prefix}/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let (h, b) = r.read_response();
        assert!(h.starts_with("HTTP/1.1 201"), "{h}");
        assert!(String::from_utf8_lossy(&b).contains("\"Id\""));
        // W-04: a start with body `null`, and an empty body labelled JSON.
        let start_body = if i == 0 { "null" } else { "" };
        r.send(format!("POST {prefix}/containers/{name}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{start_body}", start_body.len()).as_bytes());
        let (h, _) = r.read_response();
        assert!(h.starts_with("HTTP/1.1 204"), "{h}");
        assert_eq!(ok(docker(DIRECT, &["wait", &name])).trim(), "0");
        assert_eq!(ok(docker(DIRECT, &["logs", &name])), "1\n");
    }
    // The daemon reads field names without regard to case and routes escaped paths decoded:
    // so does the proxy, or such a create would slip past it unwrapped.
    let name = c.container("lower");
    let body = format!(r#"{{"image":"{a}","env":["WEAVE_CIDR=10.2.1.1/24"]}}"#);
    let mut r = Raw::tcp(&p.addr());
    r.send(format!("POST /containers/%63reate?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let (h, _) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 201"), "{h}");
    assert_eq!(
        inspect(&name, "{{json .Config.Entrypoint}}"),
        r#"["/w/w","grep"]"#
    );
    ok(docker(&p.tcp, &["start", &name]));
    assert_eq!(ok(docker(DIRECT, &["wait", &name])).trim(), "0");
    assert_eq!(ok(docker(DIRECT, &["logs", &name])), "1\n");
    let body = r#"{"image":"x","env":["WEAVE_CIDR=bogus"]}"#;
    r.send(format!("POST /v1.41/containers/%63reate HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let (h, b) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 400"), "{h}");
    assert!(String::from_utf8_lossy(&b).contains("invalid WEAVE_CIDR"));

    // The daemon reads the first JSON value and ignores what follows; so does the proxy.
    let name = c.container("trail");
    let body = format!(r#"{{"Image":"{a}","Env":["WEAVE_CIDR=10.2.1.1/24"]}} {{"x":1}}"#);
    r.send(format!("POST /containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let (h, _) = r.read_response();
    assert!(h.starts_with("HTTP/1.1 201"), "{h}");
    assert_eq!(
        inspect(&name, "{{json .Config.Entrypoint}}"),
        r#"["/w/w","grep"]"#
    );
    // Fields of a type the daemon refuses reach it as sent: its answer, not a rewritten success.
    for bad in [r#""HostConfig":{"Binds":"x"}"#, r#""Entrypoint":{"a":1}"#] {
        let body = format!(r#"{{"Image":"{a}","Env":["WEAVE_CIDR=10.2.1.1/24"],{bad}}}"#);
        let req = format!(
            "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut d = raw_direct();
        d.send(req.as_bytes());
        let (direct, _) = d.read_response();
        r.send(req.as_bytes());
        let (through, _) = r.read_response();
        assert!(!direct.starts_with("HTTP/1.1 201"), "{bad}: {direct}");
        assert_eq!(
            through.lines().next(),
            direct.lines().next(),
            "{bad}: {through}"
        );
    }

    // A create body the proxy will not hold whole: Docker's 413, with the limit named.
    let mut big = std::net::TcpStream::connect(p.addr()).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let len = 17 * 1024 * 1024;
    let head = format!(
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let mut writer = big.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(head.as_bytes());
        // The proxy may stop reading once it has answered: errors here are expected.
        let _ = writer.write_all(&vec![b' '; len]);
    });
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut big, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over 16 MiB"), "{answer}");
    drop(big);
    let _ = sender.join();
}

#[test]
fn unknown_image_gets_the_daemons_404_with_its_name() {
    let p = ProxyProc::start(&[]);
    // W-36
    let body = r#"{"Image":"doesnotexist:latest","Env":["WEAVE_CIDR=10.2.1.1/24"]}"#;
    let req = format!(
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut r = Raw::tcp(&p.addr());
    r.send(req.as_bytes());
    let (h, b) = r.read_response();
    let mut d = raw_direct();
    d.send(req.as_bytes());
    let (dh, db) = d.read_response();
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    assert_eq!(b, db);
    assert!(dh.starts_with("HTTP/1.1 404"));
    assert!(String::from_utf8_lossy(&b).contains("doesnotexist:latest"));
}

#[test]
fn attach_failure_kills_and_reports() {
    // W-34: an address that needs the allocator, and no network service answers.
    let p = ProxyProc::start(&["--weave-api", &format!("http://127.0.0.1:{}", free_port())]);
    let mut c = Cleanup::new();
    let name = c.container("noipam");
    let started = Instant::now();
    let out = docker(
        &p.tcp,
        &[
            "run",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=",
            image(),
            "echo",
            "must-not-run",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(!out.stdout.contains("must-not-run"), "{out:?}");
    assert!(
        out.stderr
            .contains("weave is not running: start it with `weave launch`"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(inspect(&name, "{{.State.Running}}"), "false");
    // And with --rm nothing is left behind.
    let name = c.container("noipam-rm");
    let out = docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=",
            image(),
            "true",
        ],
    );
    assert_ne!(out.code, 0);
    wait_until("--rm removal", || {
        docker(DIRECT, &["inspect", &name]).code != 0
    });
}

/// At the default log level each start is one "attached" line, though both the start request
/// and the event watcher reach it (a new user read the second as a second attach).
#[test]
fn one_attached_line_per_start() {
    let p = ProxyProc::start(&["--log-level", "info"]);
    let mut c = Cleanup::new();
    let name = c.container("once");
    sleeper(&p.tcp, &name, &["-e", "WEAVE_CIDR=10.2.1.9/24"]);
    let id = inspect(&name, "{{.Id}}");
    let lines = || {
        p.log_text()
            .lines()
            .filter(|l| l.contains(" attached") && l.contains(&id[..12]))
            .count()
    };
    wait_until("the start is attached", || lines() >= 1);
    // The event watcher's pass comes within moments; give it time to log, if it would.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(), 1, "{}", p.log_text());
    ok(docker(&p.tcp, &["restart", "-t", "0", &name]));
    wait_until("the restart is attached", || lines() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(), 2, "{}", p.log_text());
}
