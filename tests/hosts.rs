//! The /etc/hosts rewrite against a live reader: the start interceptor and the event watcher
//! can both reach a running container, so a rewrite must never show its program an empty
//! file (a CI failure of `dns::hosts_file_rewrite`: `cat /etc/hosts` printed nothing).

mod support;

use std::time::Duration;
use support::{Cleanup, DIRECT, docker, inspect, ok};
use weaveproxy::intercept::hosts;

#[test]
fn a_rewrite_never_shows_a_reader_an_empty_file() {
    support::require_docker();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("hostsreader");
    // Stats the file as fast as a shell can, for as long as the test writes.
    ok(docker(
        DIRECT,
        &[
            "run",
            "-d",
            "--name",
            &name,
            support::image(),
            "sh",
            "-c",
            "while [ ! -e /tmp/stop ]; do [ -s /etc/hosts ] || echo EMPTY; done; \
             echo finished; exec sleep 600",
        ],
    ));
    let pid: u32 = inspect(&name, "{{.State.Pid}}").parse().expect("pid");
    let text = |ip: &str| hosts::contents("reader.weave.local.", &[ip.parse().unwrap()], &[]);
    let (a, b) = (text("10.2.9.1/24"), text("10.2.9.22/24"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for i in 0..2000 {
            hosts::write(pid, if i % 2 == 0 { &a } else { &b })
                .await
                .expect("rewrite");
        }
    });
    ok(docker(DIRECT, &["exec", &name, "touch", "/tmp/stop"]));
    support::wait_until("the reader finishes", || {
        ok(docker(DIRECT, &["logs", &name])).contains("finished")
    });
    let log = ok(docker(DIRECT, &["logs", &name]));
    let empty = log.lines().filter(|l| *l == "EMPTY").count();
    assert_eq!(empty, 0, "the reader saw an empty /etc/hosts {empty} times");
    assert_eq!(log.trim(), "finished");
    let file = format!("/proc/{pid}/root/etc/hosts");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), b);

    // Unchanged text leaves the file alone: its modification time does not move.
    let mtime = || std::fs::metadata(&file).unwrap().modified().unwrap();
    let before = mtime();
    std::thread::sleep(Duration::from_millis(20));
    rt.block_on(hosts::write(pid, &b)).unwrap();
    assert_eq!(before, mtime(), "an unchanged file is not written");
    // A shorter text is cut to its own length.
    rt.block_on(hosts::write(pid, &a)).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), a);
}
