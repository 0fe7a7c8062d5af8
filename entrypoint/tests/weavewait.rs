use std::process::Command;
use std::time::{Duration, Instant};

fn ww(iface: &str, timeout: &str, args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weavewait"))
        .env("WEAVEWAIT_IFACE", iface)
        .env("WEAVEWAIT_TIMEOUT", timeout)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn execs_once_the_interface_is_ready() {
    // `lo` is up, running and has 127.0.0.1 in any network namespace.
    let (code, out, _, _) = ww("lo", "5", &["sh", "-c", "echo ran; exit 7"]);
    assert_eq!((code, out.as_str()), (7, "ran\n"));
}

#[test]
fn no_command() {
    let (code, _, err, _) = ww("lo", "5", &[]);
    assert_eq!(code, 1);
    assert_eq!(err, "No command specified\n");
}

#[test]
fn missing_program_uses_dockers_wording() {
    let (code, _, err, _) = ww("lo", "5", &["no-such-program-here"]);
    assert_eq!(code, 127);
    assert_eq!(
        err,
        "exec: \"no-such-program-here\": executable file not found in $PATH\n"
    );
    let (code, _, err, _) = ww("lo", "5", &["/no/such"]);
    assert_eq!(code, 127);
    assert!(err.contains("no such file or directory"), "{err}");
}

#[test]
fn bounded_wait_fails_loudly() {
    let (code, out, err, took) = ww("wwmissing0", "0.3", &["echo", "must-not-run"]);
    assert_eq!(code, 1);
    assert_eq!(out, "", "the command must never run without its network");
    assert!(
        err.contains("timed out") && err.contains("wwmissing0"),
        "{err}"
    );
    assert!(took >= Duration::from_millis(300));
    let (code, _, err, _) = ww("lo", "soon", &["true"]);
    assert_eq!(code, 1);
    assert!(err.contains("WEAVEWAIT_TIMEOUT"), "{err}");
}
