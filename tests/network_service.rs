//! The IPAM service run in-process on loopback, driven through `RouterClient` and raw HTTP.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use weaveproxy::network::{self, Options};
use weaveproxy::router_api::{RouterClient, RouterError};
use weaveproxy::weave_cidr::Cidr;

mod support;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// A full Docker-style id, as the proxy sends.
fn id(n: usize) -> String {
    format!("{n:064x}")
}

struct Running {
    addr: SocketAddr,
    client: RouterClient,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("service did not stop")
            .expect("service panicked")
            .expect("service failed");
    }
}

fn options(dir: &Path, range: &str, default_subnet: Option<&str>) -> Options {
    Options {
        ipalloc_range: c(range),
        ipalloc_default_subnet: default_subnet.map(c),
        data_dir: dir.to_path_buf(),
        ..Options::default()
    }
}

async fn start_with(opts: Options) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(network::serve_on(listener, opts, None, async {
        let _ = stopped.await;
    }));
    let client = RouterClient::new(&format!("http://{addr}")).unwrap();
    Running {
        addr,
        client,
        stop,
        task,
    }
}

async fn start(dir: &Path) -> Running {
    start_with(options(dir, "10.32.0.0/12", None)).await
}

/// One request over a fresh connection; returns (status, content type, body).
async fn raw(addr: SocketAddr, head: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("reply timed out")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").expect("no header end");
    let status = headers[9..12].parse().unwrap();
    let ctype = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

#[tokio::test]
async fn fifty_allocations_are_distinct_and_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let range = c("10.32.0.0/12");
    let mut seen = HashSet::new();
    for n in 0..50 {
        let got = svc.client.allocate(&id(n), None).await.unwrap();
        assert!(range.contains(got.addr), "{got}");
        assert_eq!(got.prefix, 12);
        assert_ne!(got.addr, range.addr, "network address handed out");
        assert!(seen.insert(got.addr), "{got} handed out twice");
    }
    // Asking again is idempotent.
    let again = svc.client.allocate(&id(7), None).await.unwrap();
    assert_eq!(svc.client.lookup(&id(7)).await.unwrap(), vec![again]);
    assert!(svc.client.status().await.unwrap().contains("Allocated: 50"));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_never_share() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let client = svc.client.clone();
        tasks.push(tokio::spawn(async move {
            client.allocate(&id(n), Some(c("10.40.0.0/24"))).await
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        let got = t.await.unwrap().unwrap();
        assert!(c("10.40.0.0/24").contains(got.addr));
        assert!(seen.insert(got.addr), "{got} handed out twice");
    }
    assert_eq!(seen.len(), 20);
    svc.stop().await;
}

#[tokio::test]
async fn release_then_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let net = Some(c("10.40.0.0/29"));
    let a = svc.client.allocate(&id(1), net).await.unwrap();
    let b = svc.client.allocate(&id(2), net).await.unwrap();
    assert_eq!((a, b), (c("10.40.0.1/29"), c("10.40.0.2/29")));
    svc.client.release(&id(1)).await.unwrap();
    assert_eq!(svc.client.lookup(&id(1)).await.unwrap(), vec![]);
    assert_eq!(svc.client.allocate(&id(3), net).await.unwrap(), a);
    // Releasing twice is fine.
    svc.client.release(&id(1)).await.unwrap();

    // Releasing one address keeps the others.
    let d = svc.client.allocate(&id(3), None).await.unwrap();
    let (st, _, body) = raw(
        svc.addr,
        &format!("DELETE /ip/{}/10.40.0.1 HTTP/1.1", id(3)),
    )
    .await;
    assert_eq!((st, body.as_str()), (204, ""));
    assert_eq!(svc.client.lookup(&id(3)).await.unwrap(), vec![d]);
    svc.stop().await;
}

#[tokio::test]
async fn restart_keeps_allocations_and_hands_out_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let mut before = Vec::new();
    for n in 0..5 {
        before.push(svc.client.allocate(&id(n), None).await.unwrap());
    }
    svc.client.claim(&id(9), c("10.2.1.1/24")).await.unwrap();
    svc.client.release(&id(2)).await.unwrap();
    svc.stop().await;

    // Second life through `serve` itself, on a port picked by binding and dropping.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let opts = Options {
        http_addr: port,
        ..options(dir.path(), "10.32.0.0/12", None)
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(network::serve(opts, None, async {
        let _ = stopped.await;
    }));
    let client = RouterClient::new(&port.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(client.status().await, Err(RouterError::NotRunning)) {
        assert!(Instant::now() < deadline, "restarted service never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for (n, addr) in before.iter().enumerate() {
        let want = if n == 2 { vec![] } else { vec![*addr] };
        assert_eq!(client.lookup(&id(n)).await.unwrap(), want);
    }
    assert_eq!(client.lookup(&id(9)).await.unwrap(), vec![c("10.2.1.1/24")]);
    // The freed address is reused; nobody else's is.
    let fresh = client.allocate(&id(100), None).await.unwrap();
    assert_eq!(fresh, before[2]);
    let next = client.allocate(&id(101), None).await.unwrap();
    assert!(!before.contains(&next), "{next} handed out twice");
    let err = client.claim(&id(102), before[0]).await.unwrap_err();
    assert!(err.to_string().contains(&id(0)), "{err}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn claim_clash_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    // Outside the range: accepted and recorded.
    svc.client.claim(&id(1), c("10.2.1.1/24")).await.unwrap();
    svc.client.claim(&id(1), c("10.2.1.1/24")).await.unwrap();
    match svc.client.claim(&id(2), c("10.2.1.1/24")).await {
        Err(RouterError::Api { status, message }) => {
            assert_eq!(status, 400);
            assert_eq!(
                message,
                format!(
                    "Unable to claim: address 10.2.1.1 is already in use by container {}",
                    id(1)
                )
            );
        }
        other => panic!("expected a clash, got {other:?}"),
    }
    // An allocated address is protected the same way.
    let got = svc.client.allocate(&id(3), None).await.unwrap();
    let err = svc.client.claim(&id(4), got).await.unwrap_err();
    assert!(err.to_string().contains(&id(3)), "{err}");
    svc.stop().await;
}

#[tokio::test]
async fn slash_29_is_exhausted_after_six() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let net = c("10.40.0.0/29");
    let mut got = Vec::new();
    for n in 0..6 {
        got.push(svc.client.allocate(&id(n), Some(net)).await.unwrap());
    }
    let want: Vec<Cidr> = (1..=6).map(|i| c(&format!("10.40.0.{i}/29"))).collect();
    assert_eq!(got, want);
    match svc.client.allocate(&id(6), Some(net)).await {
        Err(RouterError::Api { status, message }) => {
            assert_eq!(status, 400);
            assert_eq!(
                message,
                "Unable to allocate: no free addresses in subnet 10.40.0.0/29"
            );
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    svc.stop().await;
}

#[tokio::test]
async fn net_subnet_and_default_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start_with(options(dir.path(), "10.32.0.0/12", Some("10.32.7.0/24"))).await;
    let default = svc.client.allocate(&id(1), None).await.unwrap();
    assert_eq!(default, c("10.32.7.1/24"));
    let net = svc
        .client
        .allocate(&id(1), Some(c("10.33.0.0/16")))
        .await
        .unwrap();
    assert_eq!(net, c("10.33.0.1/16"));
    assert_eq!(svc.client.lookup(&id(1)).await.unwrap(), vec![default, net]);

    let (st, _, body) = raw(svc.addr, "GET /ipinfo/defaultsubnet HTTP/1.1").await;
    assert_eq!((st, body.as_str()), (200, "10.32.7.0/24\n"));

    let err = svc
        .client
        .allocate(&id(2), Some(c("192.168.0.0/24")))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("subnet 192.168.0.0/24 is outside the allocation range 10.32.0.0/12"),
        "{err}"
    );
    let (st, _, body) = raw(
        svc.addr,
        &format!("POST /ip/{}/10.33.0.1/16 HTTP/1.1", id(2)),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        body,
        "Unable to allocate: invalid subnet 10.33.0.1/16: bits after the network prefix are not all zero\n"
    );
    svc.stop().await;
}

#[tokio::test]
async fn status_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    svc.client.allocate(&id(1), None).await.unwrap();
    svc.client.claim(&id(2), c("10.2.1.1/24")).await.unwrap();
    let text = svc.client.status().await.unwrap();
    assert_eq!(
        text,
        "Service: ipam\nRange: 10.32.0.0/12\nDefaultSubnet: 10.32.0.0/12\nAllocated: 2\n"
    );
    let (st, ctype, body) = raw(svc.addr, "GET /status?format=json HTTP/1.1").await;
    assert_eq!((st, ctype.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Range"], "10.32.0.0/12");
    assert_eq!(v["DefaultSubnet"], "10.32.0.0/12");
    assert_eq!(v["Allocated"], 2);
    let (_, ctype, _) = raw(svc.addr, "GET /status HTTP/1.1\r\nAccept: application/json").await;
    assert_eq!(ctype, "application/json");
    svc.stop().await;
}

#[tokio::test]
async fn wire_format_matches_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    // The original client's request: a form body on POST.
    let mut s = TcpStream::connect(svc.addr).await.unwrap();
    let req = format!(
        "POST /ip/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\nConnection: close\r\n\r\ncheck-alive=true",
        id(1)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\n10.32.0.1/12"), "{reply}");

    let (st, _, body) = raw(
        svc.addr,
        &format!("PUT /ip/{}/10.32.0.9/12 HTTP/1.1", id(1)),
    )
    .await;
    assert_eq!((st, body.as_str()), (204, ""));
    let (st, _, body) = raw(svc.addr, &format!("GET /ip/{} HTTP/1.1", id(1))).await;
    assert_eq!((st, body.as_str()), (200, "10.32.0.1/12\n10.32.0.9/12\n"));
    let (st, _, _) = raw(svc.addr, &format!("DELETE /ip/{} HTTP/1.1", id(1))).await;
    assert_eq!(st, 204);
    let (st, _, body) = raw(svc.addr, &format!("GET /ip/{} HTTP/1.1", id(1))).await;
    assert_eq!(st, 404);
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{body:?}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn bad_requests_get_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let good = id(1);
    let cases = [
        ("POST /ip/bad%20id HTTP/1.1".to_string(), 400),
        ("POST /ip/a%2Fb/10.32.0.0/12 HTTP/1.1".to_string(), 400),
        (format!("PUT /ip/{good}/10.2.1.300/24 HTTP/1.1"), 400),
        (format!("PUT /ip/{good}/10.2.1.1/33 HTTP/1.1"), 400),
        (format!("PUT /ip/{good}/10.2.1.1/x HTTP/1.1"), 400),
        (format!("POST /ip/{good}/10.2.1.0/024 HTTP/1.1"), 400),
        (format!("DELETE /ip/{good}/notanip HTTP/1.1"), 400),
        (format!("PUT /ip/{good} HTTP/1.1"), 400),
        (format!("PATCH /ip/{good} HTTP/1.1"), 400),
        (format!("POST /ip/{good}/1/2/3 HTTP/1.1"), 404),
        ("POST /status HTTP/1.1".to_string(), 400),
        ("GET /nope HTTP/1.1".to_string(), 404),
        ("GET / HTTP/1.1".to_string(), 404),
        ("GET /ip HTTP/1.1".to_string(), 404),
    ];
    for (head, want) in cases {
        let (st, _, body) = raw(svc.addr, &head).await;
        assert_eq!(st, want, "{head}: {body:?}");
        assert!(
            body.ends_with('\n') && body.lines().count() == 1 && body.len() > 1,
            "{head}: {body:?}"
        );
    }
    // The client refuses ids that would escape the path before sending anything.
    assert!(matches!(
        svc.client.allocate("../status", None).await,
        Err(RouterError::BadId(_))
    ));
    // Nothing above changed the state.
    assert!(svc.client.status().await.unwrap().contains("Allocated: 0"));
    svc.stop().await;
}

#[tokio::test]
async fn closed_port_is_not_running_quickly() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = RouterClient::new(&format!("http://{addr}")).unwrap();
    let t = Instant::now();
    let err = client.allocate(&id(1), None).await.unwrap_err();
    assert!(matches!(err, RouterError::NotRunning), "{err:?}");
    assert_eq!(
        err.to_string(),
        "weave is not running: start it with `weave launch`"
    );
    assert!(matches!(
        client.status().await,
        Err(RouterError::NotRunning)
    ));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn corrupt_state_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ipam.json"), "{garbage").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let res = network::serve_on(
        listener,
        options(dir.path(), "10.32.0.0/12", None),
        None,
        std::future::pending(),
    )
    .await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
}

/// Runs the docker CLI; `None` if it failed.
fn docker_cli(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Against the real daemon: dead holders are reclaimed at start, and a destroyed container's
/// addresses come back promptly, so a small subnet survives many short-lived containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_destroy_releases_addresses() {
    support::require_docker();
    let mut cleanup = support::Cleanup::new();
    let image = cleanup.image("empty");
    let image = image.as_str();
    // An empty image is enough: containers are only created and removed, never started.
    let empty_tar = vec![0u8; 1024];
    let mut import = std::process::Command::new("docker")
        .args(["import", "-", image])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        import.stdin.take().unwrap().write_all(&empty_tar).unwrap();
    }
    assert!(import.wait().unwrap().success(), "docker import failed");
    let docker = bollard::Docker::connect_with_unix_defaults().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let gone = format!("{:064x}", 0xdead_u32);
    {
        let svc = start(dir.path()).await;
        svc.client.allocate(&gone, None).await.unwrap();
        svc.client.allocate("weave:expose", None).await.unwrap();
        svc.stop().await;
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(network::serve_on(
        listener,
        options(dir.path(), "10.32.0.0/12", None),
        Some(docker),
        async {
            let _ = stopped.await;
        },
    ));
    let client = RouterClient::new(&addr.to_string()).unwrap();

    let wait_released = |id: String| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if client.lookup(&id).await.unwrap().is_empty() {
                    return;
                }
                assert!(Instant::now() < deadline, "{id} was never released");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_released(gone.clone()).await;
    assert_eq!(client.lookup("weave:expose").await.unwrap().len(), 1);

    // More containers than the /28 has addresses, one after another.
    let net = Some(c("10.40.0.0/28"));
    for _ in 0..20 {
        let id = docker_cli(&["create", image, "/nothing"]).expect("docker create");
        assert_eq!(id.len(), 64, "{id}");
        cleanup.add_container(&id);
        let got = client.allocate(&id, net).await.unwrap();
        assert!(c("10.40.0.0/28").contains(got.addr));
        docker_cli(&["rm", &id]).expect("docker rm");
        wait_released(id).await;
    }

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_options_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for (range, default) in [
        ("10.32.0.0/12", Some("192.168.0.0/24")),
        ("10.32.0.1/12", None),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let res = network::serve_on(
            listener,
            options(dir.path(), range, default),
            None,
            std::future::pending(),
        )
        .await;
        let err = format!("{:#}", res.unwrap_err());
        assert!(err.contains("--ipalloc-range"), "{err}");
    }
}
