//! Automatic IP address assignment through the proxy (seed: "Automatic IP address assignment"),
//! with our network service as a process of the test's own: blank `WEAVE_CIDR`, `net:` and `ip:`
//! forms, claims, exhaustion and release, a service that crashes mid-way, and the attach
//! decision for every network mode (W-16, W-21).

mod support;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use support::*;

/// A proxy and the network service behind it, sharing the proxy's bridge.
fn proxy_with_service(range: &str, extra: &[&str]) -> (ProxyProc, NetworkService) {
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut args = vec!["--weave-api", &api];
    args.extend_from_slice(extra);
    let p = ProxyProc::start(&args);
    let s = NetworkService::start_on(port, &p.bridge, range);
    (p, s)
}

/// The container's weave addresses, read inside it.
fn addresses(host: &str, name: &str) -> Vec<(Ipv4Addr, u8)> {
    ethwe_v4(&ok(docker(
        host,
        &["exec", name, "ip", "-4", "addr", "show", "ethwe"],
    )))
}

fn run_d(host: &str, name: &str, env: &[&str], extra: &[&str]) -> Out {
    let mut args = vec!["run", "-d", "--name", name];
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend_from_slice(extra);
    args.extend([image(), "sleep", "600"]);
    docker(host, &args)
}

fn error_line(out: &Out) -> String {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("Error response from daemon"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {}", out.stderr);
    lines[0].to_string()
}

fn running(name: &str) -> bool {
    docker(DIRECT, &["inspect", "-f", "{{.State.Running}}", name])
        .stdout
        .trim()
        == "true"
}

#[test]
fn fifty_blank_cidrs_get_distinct_addresses_across_a_service_crash() {
    let (p, mut service) = proxy_with_service("10.46.0.0/24", &[]);
    let mut c = Cleanup::new();
    let names: Vec<String> = (0..50).map(|i| c.container(&format!("b{i}"))).collect();
    let mut seen = HashSet::new();
    for (i, name) in names.iter().enumerate() {
        if i == 25 {
            // Mid-way the service dies without a chance to save anything more, and comes back
            // with what it had persisted.
            service.kill();
            service.restart();
        }
        ok(run_d(&p.tcp, name, &["WEAVE_CIDR="], &[]));
        let got = addresses(&p.tcp, name);
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        let (ip, len) = got[0];
        assert_eq!(len, 24);
        assert!(in_subnet(ip, "10.46.0.0".parse().unwrap(), 24), "{ip}");
        assert!(seen.insert(ip), "{ip} handed out twice (container {i})");
    }
}

#[test]
fn exhaustion_release_claims_and_bad_subnets() {
    let (p, _service) = proxy_with_service("10.47.0.0/16", &[]);
    let mut c = Cleanup::new();
    let subnet: Ipv4Addr = "10.47.1.0".parse().unwrap();

    // A /29 holds six containers.
    let six: Vec<String> = (0..6).map(|i| c.container(&format!("x{i}"))).collect();
    let mut held = Vec::new();
    for name in &six {
        ok(run_d(&p.tcp, name, &["WEAVE_CIDR=net:10.47.1.0/29"], &[]));
        let got = addresses(&p.tcp, name);
        assert!(in_subnet(got[0].0, subnet, 29), "{got:?}");
        held.push(got[0].0);
    }
    assert_eq!(held.iter().collect::<HashSet<_>>().len(), 6);
    // The seventh fails with one line, and is not left running.
    let seventh = c.container("x6");
    let out = run_d(&p.tcp, &seventh, &["WEAVE_CIDR=net:10.47.1.0/29"], &[]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("no free addresses in subnet 10.47.1.0/29"),
        "{line}"
    );
    assert!(!running(&seventh));

    // An address comes back when its container goes.
    ok(docker(&p.tcp, &["rm", "-f", &six[2]]));
    let again = c.container("x7");
    ok(run_d(&p.tcp, &again, &["WEAVE_CIDR=net:10.47.1.0/29"], &[]));
    assert_eq!(addresses(&p.tcp, &again)[0].0, held[2]);

    // `ip:` and a bare CIDR claim: the second claimant of an address is refused, naming the
    // holder.
    let first = c.container("claim1");
    ok(run_d(&p.tcp, &first, &["WEAVE_CIDR=ip:10.47.9.5/16"], &[]));
    assert_eq!(
        addresses(&p.tcp, &first),
        vec![("10.47.9.5".parse().unwrap(), 16)]
    );
    let first_id = ok(docker(DIRECT, &["inspect", "-f", "{{.Id}}", &first]));
    let second = c.container("claim2");
    let out = run_d(&p.tcp, &second, &["WEAVE_CIDR=10.47.9.5/16"], &[]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("10.47.9.5") && line.contains(first_id.trim()),
        "{line}"
    );
    assert!(!running(&second));
    // An allocated address cannot be claimed either.
    let third = c.container("claim3");
    let taken = format!("WEAVE_CIDR={}/16", held[0]);
    let out = run_d(&p.tcp, &third, &[&taken], &[]);
    assert_ne!(out.code, 0, "claimed an allocated address");
    assert!(
        error_line(&out).contains("already in use"),
        "{}",
        out.stderr
    );

    // A subnet outside the range, and one with host bits, are one clear line each.
    for (value, want) in [
        (
            "net:10.99.0.0/24",
            "outside the allocation range 10.47.0.0/16",
        ),
        ("net:10.47.5.1/24", "no bits set after its /24 prefix"),
    ] {
        let name = c.container("badnet");
        let env = format!("WEAVE_CIDR={value}");
        let out = run_d(&p.tcp, &name, &[&env], &[]);
        assert_ne!(out.code, 0, "{value}");
        let line = error_line(&out);
        assert!(line.contains(want), "{value}: {line}");
        assert!(!running(&name));
    }

    // net:default is the default subnet (the whole range here).
    let dflt = c.container("dflt");
    ok(run_d(&p.tcp, &dflt, &["WEAVE_CIDR=net:default"], &[]));
    let got = addresses(&p.tcp, &dflt);
    assert!(in_subnet(got[0].0, "10.47.0.0".parse().unwrap(), 16));
}

/// W-16: `""`, `default` and `bridge` are the same network mode to the proxy.
#[test]
fn network_modes_empty_default_and_bridge_are_attached() {
    let (p, _service) = proxy_with_service("10.48.0.0/24", &[]);
    let mut c = Cleanup::new();
    let v = api_version();
    for mode in ["", "default", "bridge"] {
        let name = c.container("mode");
        let body = format!(
            r#"{{"Image":"{}","Cmd":["grep","^1$","/sys/class/net/ethwe/carrier"],"Env":["WEAVE_CIDR="],"HostConfig":{{"NetworkMode":"{mode}"}}}}"#,
            image()
        );
        let mut r = Raw::tcp(&p.addr());
        r.send(format!("POST /v{v}/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let (h, b) = r.read_response();
        assert!(h.starts_with("HTTP/1.1 201"), "{mode:?}: {h}{b:?}");
        let out = docker(&p.tcp, &["start", "-a", &name]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "1\n"),
            "{mode:?}: {out:?}"
        );
    }
}

/// W-21: who is attached, for every network mode; a second proxy with no default allocation
/// stands in for a second host on the same weave network.
#[test]
fn attach_decision_per_network_mode() {
    let (p1, service) = proxy_with_service("10.49.0.0/24", &["--with-ipam"]);
    let p2 = ProxyProc::start_sharing(&["--weave-api", &service.api()], &p1);
    let mut c = Cleanup::new();
    let [auto, none, nodocker, bridge, host, other, zero, nodefault] = [
        "auto",
        "none",
        "nodocker",
        "bridge",
        "host",
        "other",
        "zero",
        "nodefault",
    ]
    .map(|n| c.container(n));

    ok(run_d(&p1.tcp, &auto, &[], &[]));
    ok(run_d(&p1.tcp, &none, &["WEAVE_CIDR=none"], &[]));
    ok(run_d(&p1.tcp, &nodocker, &[], &["--net=none"]));
    ok(run_d(&p1.tcp, &bridge, &[], &["--net=bridge"]));
    ok(run_d(&p1.tcp, &host, &[], &["--net=host"]));
    let share = format!("--net=container:{auto}");
    ok(run_d(&p1.tcp, &other, &[], &[&share]));
    ok(run_d(&p2.tcp, &zero, &["WEAVE_CIDR="], &[]));
    ok(run_d(&p2.tcp, &nodefault, &[], &[]));

    let weave_addr = |name: &str| {
        let out = docker(DIRECT, &["exec", name, "ip", "-4", "addr", "show", "ethwe"]);
        ethwe_v4(&out.stdout).first().map(|a| a.0)
    };
    let a = weave_addr(&auto).expect("auto is attached");
    let z = weave_addr(&zero).expect("zero is attached");
    let b = weave_addr(&bridge).expect("bridge is attached");
    let n = weave_addr(&nodocker).expect("--net=none is attached");
    assert_eq!(weave_addr(&other), Some(a), "other shares auto's namespace");
    for name in [&none, &nodefault, &host] {
        assert_eq!(weave_addr(name), None, "{name} has no weave address");
    }
    // host and other start at once: the proxy never wrapped them in weavewait.
    for name in [&host, &other, &none, &nodefault] {
        let ep = ok(docker(
            DIRECT,
            &["inspect", "-f", "{{json .Config.Entrypoint}}", name],
        ));
        assert!(!ep.contains("/w/w"), "{name}: {ep}");
        assert!(running(name), "{name}");
    }
    let nodocker_links = ok(docker(DIRECT, &["exec", &nodocker, "ls", "/sys/class/net"]));
    assert!(!nodocker_links.contains("eth0"), "{nodocker_links}");

    let ping = |from: &str, to: Ipv4Addr| {
        let out = docker(
            DIRECT,
            &["exec", from, "ping", "-c", "1", "-W", "5", &to.to_string()],
        );
        assert_eq!(out.code, 0, "{from} → {to}: {}{}", out.stdout, out.stderr);
    };
    ping(&auto, z);
    for ip in [a, b, n] {
        ping(&zero, ip);
    }
    ping(&other, z);
}

/// A network service that accepts connections but never answers (paused, wedged) fails the
/// start within a bound, naming it, instead of holding `docker run` for ever.
#[test]
fn a_router_that_never_answers_fails_the_start_in_bounded_time() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in silent.incoming().flatten() {
            keep.lock().unwrap().push(c);
        }
    });
    let p = ProxyProc::start(&["--weave-api", &format!("http://{addr}")]);
    let mut c = Cleanup::new();
    let name = c.container("silent");
    let started = std::time::Instant::now();
    let out = docker(
        &p.tcp,
        &["run", "--name", &name, "-e", "WEAVE_CIDR=", image(), "true"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("did not answer"), "{}", out.stderr);
    assert!(out.stderr.contains(&addr.to_string()), "{}", out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(inspect(&name, "{{.State.Running}}"), "true");
    drop(held);
}
