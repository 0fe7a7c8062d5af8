//! W-26 / issue 3 "re-attach": a Docker daemon restart stops every container; those with a
//! restart policy come back with the daemon, in new network namespaces, and the proxy (whose
//! event stream broke with the daemon) attaches them again. In a test binary of its own: it
//! waits until no other test process on this machine uses the daemon.

mod support;

use support::*;

#[test]
fn containers_restarted_by_a_daemon_restart_are_attached_again() {
    exclusive_daemon();
    let p = ProxyProc::start(&[]);
    let mut c = Cleanup::new();
    let name = c.container("survivor");
    ok(docker(
        &p.tcp,
        &[
            "run",
            "-d",
            "--restart=always",
            "--name",
            &name,
            "-e",
            "WEAVE_CIDR=10.2.1.42/24",
            image(),
            "sleep",
            "600",
        ],
    ));
    let pid_before = inspect(&name, "{{.State.Pid}}");
    restart_daemon();
    wait_until("the container comes back with the daemon", || {
        let pid = inspect(&name, "{{.State.Pid}}");
        pid != "0" && pid != pid_before
    });
    wait_until("re-attach after the daemon restart", || {
        docker(
            DIRECT,
            &["exec", &name, "cat", "/sys/class/net/ethwe/carrier"],
        )
        .stdout
            == "1\n"
    });
    let out = ok(docker(
        DIRECT,
        &["exec", &name, "ip", "-4", "addr", "show", "ethwe"],
    ));
    assert_eq!(
        ethwe_v4(&out),
        vec![("10.2.1.42".parse().unwrap(), 24)],
        "{out}"
    );
    // The proxy itself works on: a new container through it is attached.
    let out = ok(docker(
        &p.tcp,
        &[
            "run",
            "--rm",
            "-e",
            "WEAVE_CIDR=10.2.1.43/24",
            image(),
            "cat",
            "/sys/class/net/ethwe/carrier",
        ],
    ));
    assert_eq!(out, "1\n");
}
