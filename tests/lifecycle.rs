//! The container lifecycle around the proxy: legacy start bodies that replace the create-time
//! HostConfig (W-03, W-04), error responses relayed untouched (W-37), and a daemon event
//! stream that breaks under the proxy (W-30).

mod support;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const CHECK_ETHWE_UP: &[&str] = &["grep", "^1$", "/sys/class/net/ethwe/carrier"];

/// One request on a fresh connection; (status line + headers, body).
fn request(raw: &mut Raw, method: &str, path: &str, body: Option<&str>) -> (String, Vec<u8>) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\n");
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
    } else {
        req += "\r\n";
    }
    raw.send(req.as_bytes());
    raw.read_response()
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn exit_code(name: &str) -> String {
    let out = docker(DIRECT, &["wait", name]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// W-03: API versions before 1.24 let `start` carry a HostConfig that replaces the create-time
/// one (and with it weavewait's mount). Bare and wrapped forms, both at once (nested wins),
/// host and container network modes given only at start.
#[test]
fn legacy_start_host_config_is_honoured_and_reaugmented() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let c1 = c.container("c1");
    sleeper(&p.tcp, &c1, &["-e", "WEAVE_CIDR=10.2.1.1/24"]);
    let c1_id = inspect(&c1, "{{.Id}}");
    let share = format!("container:{c1}");
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (format!(r#"{{"NetworkMode":"{share}"}}"#), share.as_str(), CHECK_ETHWE_UP.to_vec()),
        (
            format!(r#"{{"HostConfig":{{"NetworkMode":"{share}"}}}}"#),
            share.as_str(),
            CHECK_ETHWE_UP.to_vec(),
        ),
        (
            format!(r#"{{"NetworkMode":"host","HostConfig":{{"NetworkMode":"{share}"}}}}"#),
            share.as_str(),
            CHECK_ETHWE_UP.to_vec(),
        ),
        (
            r#"{"Binds":[],"Dns":null,"DnsSearch":null,"ExtraHosts":null,"VolumesFrom":null,"Devices":null,"NetworkMode":""}"#.to_string(),
            "default",
            CHECK_ETHWE_UP.to_vec(),
        ),
        (
            r#"{"HostConfig":{"NetworkMode":"host"}}"#.to_string(),
            "host",
            vec!["sh", "-c", "test ! -e /sys/class/net/ethwe"],
        ),
    ];
    for (i, (body, mode, cmd)) in cases.iter().enumerate() {
        let name = c.container(&format!("legacy{i}"));
        let cidr = format!("WEAVE_CIDR=10.2.1.{}/24", 10 + i);
        let mut args = vec!["create", "--name", &name, "-e", &cidr, image()];
        args.extend(cmd.iter().copied());
        ok(docker(&p.tcp, &args));
        let started = Instant::now();
        let (head, resp) = request(
            &mut Raw::tcp(&p.addr()),
            "POST",
            &format!("/v1.20/containers/{name}/start"),
            Some(body),
        );
        assert_eq!(
            status(&head),
            204,
            "{body}: {head}{}",
            String::from_utf8_lossy(&resp)
        );
        assert_eq!(
            exit_code(&name),
            "0",
            "{body}: {}",
            ok(docker(DIRECT, &["logs", &name]))
        );
        // weavewait did not wait for an interface that was never coming.
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        let got = inspect(&name, "{{.HostConfig.NetworkMode}}");
        // Docker records a shared namespace by the owner's id.
        let want = mode.replace(&c1, &c1_id);
        assert!(
            got == want || (*mode == "default" && got.is_empty()),
            "{body}: {got}"
        );
    }
    // Sharing c1's namespace did not give c1 more addresses.
    let out = ok(docker(
        DIRECT,
        &["exec", &c1, "ip", "-4", "addr", "show", "ethwe"],
    ));
    assert_eq!(
        ethwe_v4(&out),
        vec![("10.2.1.1".parse().unwrap(), 24)],
        "{out}"
    );
}

/// W-03 with weaveDNS: a legacy start body without resolver settings keeps the ones the proxy
/// gave the container at create.
#[test]
fn legacy_start_keeps_the_weavedns_resolver() {
    let p = ProxyProc::start(&["--with-dns", "--dns-address", "10.2.4.1"]);
    let mut c = Cleanup::new();
    let name = c.container("legacydns");
    ok(docker(
        &p.tcp,
        &[
            "create",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=10.2.1.1/24",
            image(),
            "cat",
            "/etc/resolv.conf",
        ],
    ));
    let body = r#"{"Binds":[],"Dns":null,"DnsSearch":null,"NetworkMode":""}"#;
    let (head, _) = request(
        &mut Raw::tcp(&p.addr()),
        "POST",
        &format!("/v1.20/containers/{name}/start"),
        Some(body),
    );
    assert_eq!(status(&head), 204, "{head}");
    assert_eq!(exit_code(&name), "0");
    let conf = ok(docker(DIRECT, &["logs", &name]));
    assert!(conf.contains("nameserver 10.2.4.1"), "{conf}");
    assert_eq!(
        inspect(&name, "{{json .HostConfig.Dns}}"),
        r#"["10.2.4.1"]"#
    );
}

/// W-04 on an API version that still takes the body: `{"HostConfig":{}}` resets the
/// create-time settings as Docker does, yet the container is still attached.
#[test]
fn legacy_empty_host_config_resets_but_still_attaches() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("reset");
    let mut args = vec![
        "create",
        "--name",
        &name,
        "--memory",
        "64m",
        "--memory-swap",
        "-1",
        "-e",
        "WEAVE_CIDR=10.2.1.1/24",
        image(),
    ];
    args.extend_from_slice(CHECK_ETHWE_UP);
    ok(docker(&p.tcp, &args));
    let (head, _) = request(
        &mut Raw::tcp(&p.addr()),
        "POST",
        &format!("/v1.23/containers/{name}/start"),
        Some(r#"{"HostConfig":{}}"#),
    );
    assert_eq!(status(&head), 204, "{head}");
    assert_eq!(exit_code(&name), "0");
    assert_eq!(ok(docker(DIRECT, &["logs", &name])), "1\n");
    assert_eq!(inspect(&name, "{{.HostConfig.MemorySwap}}"), "0");
}

/// On API versions that refuse a start body, and for bodies the daemon cannot parse, the
/// daemon's answer reaches the client unchanged and nothing is started.
#[test]
fn refused_start_bodies_are_the_daemons_answer() {
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let v = api_version();
    for (path_version, body) in [
        (format!("/v{v}"), r#"{"HostConfig":{"NetworkMode":"host"}}"#),
        (String::new(), r#"{"NetworkMode":"bridge"}"#),
        ("/v1.20".to_string(), r#"{"NetworkMode": ["#),
        ("/v1.20".to_string(), r#"["not", "an", "object"]"#),
    ] {
        let (via, direct) = (c.container("refused"), c.container("refused"));
        for name in [&via, &direct] {
            let mut args = vec![
                "create",
                "--name",
                name,
                "-e",
                "WEAVE_CIDR=10.2.1.1/24",
                image(),
            ];
            args.extend_from_slice(CHECK_ETHWE_UP);
            ok(docker(&p.tcp, &args));
        }
        let (ph, pb) = request(
            &mut Raw::tcp(&p.addr()),
            "POST",
            &format!("{path_version}/containers/{via}/start"),
            Some(body),
        );
        let (dh, db) = request(
            &mut raw_direct(),
            "POST",
            &format!("{path_version}/containers/{direct}/start"),
            Some(body),
        );
        assert_eq!(status(&ph), status(&dh), "{body}: {ph} vs {dh}");
        assert!(status(&ph) >= 400, "{body}: {ph}");
        assert_eq!(
            String::from_utf8_lossy(&pb).replace(&via, "NAME"),
            String::from_utf8_lossy(&db).replace(&direct, "NAME"),
            "{body}"
        );
        assert_eq!(inspect(&via, "{{.State.Running}}"), "false");
    }
}

/// W-37: error responses are never rewritten: what the CLI prints, and the raw bytes.
#[test]
fn error_responses_are_the_daemons() {
    let p = ProxyProc::start(&[]);
    for args in [
        vec!["logs", "wpt-nosuchcontainer"],
        vec!["inspect", "wpt-nosuchcontainer"],
        vec!["start", "wpt-nosuchcontainer"],
        vec!["restart", "wpt-nosuchcontainer"],
        vec!["exec", "wpt-nosuchcontainer", "true"],
    ] {
        let (via, direct) = (docker(&p.tcp, &args), docker(DIRECT, &args));
        assert_ne!(via.code, 0);
        assert_eq!(
            (via.code, &via.stdout, &via.stderr),
            (direct.code, &direct.stdout, &direct.stderr),
            "{args:?}"
        );
    }
    let v = api_version();
    for (method, path) in [
        ("GET", format!("/v{v}/containers/wpt-nosuch/json")),
        ("GET", "/containers/wpt-nosuch/json".to_string()),
        ("POST", format!("/v{v}/containers/wpt-nosuch/start")),
        ("POST", "/containers/wpt-nosuch/restart".to_string()),
    ] {
        let (ph, pb) = request(&mut Raw::tcp(&p.addr()), method, &path, None);
        let (dh, db) = request(&mut raw_direct(), method, &path, None);
        assert_eq!(status(&ph), 404, "{path}: {ph}");
        assert_eq!((status(&ph), pb), (status(&dh), db), "{path}");
    }
}

/// A unix-socket relay to the daemon whose connections the test can cut, as a daemon restart
/// or a network fault would.
struct Relay {
    path: PathBuf,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start() -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let keep = conns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(daemon) = UnixStream::connect("/var/run/docker.sock") else {
                    continue;
                };
                if let (Ok(c2), Ok(d2)) = (client.try_clone(), daemon.try_clone()) {
                    keep.lock().unwrap().extend([c2, d2]);
                }
                pipe(&client, &daemon);
                pipe(&daemon, &client);
            }
        });
        Relay {
            path,
            conns,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Resets every connection open now.
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len() / 2;
        for s in conns.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        n
    }
}

fn pipe(from: &UnixStream, to: &UnixStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn log_has(p: &ProxyProc, what: &str) -> bool {
    p.log_text().contains(what)
}

/// W-30: the proxy's event stream breaks; it resubscribes (and says so), and a container that
/// only the event stream sees restarting is attached again.
#[test]
fn broken_event_stream_is_resubscribed() {
    let relay = Relay::start();
    let p = ProxyProc::start(&["-D", &relay.addr()]);
    let mut c = Cleanup::new();
    let name = c.container("events");
    sleeper(&p.tcp, &name, &["-e", "WEAVE_CIDR=10.2.1.7/24"]);
    wait_until("the event stream is open", || {
        relay.conns.lock().unwrap().len() >= 2
    });
    assert!(relay.cut() >= 1);
    wait_until("the proxy notices", || log_has(&p, "docker event stream"));
    // Behind the proxy's back: only its (new) event stream can see this restart.
    ok(docker(DIRECT, &["restart", "-t", "1", &name]));
    wait_until("re-attach after the stream broke", || {
        docker(
            DIRECT,
            &["exec", &name, "cat", "/sys/class/net/ethwe/carrier"],
        )
        .stdout
            == "1\n"
    });
    // And a plain run through the proxy still works end to end.
    let mut args = vec!["run", "--rm", "-e", "WEAVE_CIDR=10.2.1.8/24", image()];
    args.extend_from_slice(CHECK_ETHWE_UP);
    assert_eq!(ok(docker(&p.tcp, &args)), "1\n");
}
