//! The one iptables rule weave needs: forwarding between interfaces of its bridge.
//!
//! The host's own iptables is used (it is the one whose rules Docker keeps). When the proxy runs
//! as a container (host PID namespace), the command runs in the host's mount namespace, so the
//! image needs no iptables of its own.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn iptables(args: &[&str]) -> std::io::Result<std::process::Output> {
    let mut cmd = Command::new("iptables");
    cmd.arg("-w").args(args);
    let own = std::fs::read_link("/proc/self/ns/mnt").ok();
    let host = host_mnt_ns();
    if let (Some(own), Some((host_path, host))) = (own, host)
        && own != host
    {
        let ns = std::fs::File::open(host_path)?;
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        // SAFETY: between fork and exec only setns (async-signal-safe) runs; the child is
        // single-threaded there, which entering a mount namespace requires.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(std::io::Error::from)
            });
        }
    }
    cmd.output()
}

/// The host's mount namespace: init's, or where init's is out of reach (a sandboxed init), the
/// Docker daemon's, whose iptables rules are the ones that matter.
fn host_mnt_ns() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let ns = |pid: &str| {
        let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/mnt"));
        let link = std::fs::read_link(&path).ok()?;
        Some((path, link))
    };
    ns("1").or_else(|| {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid = e.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim_end() == "dockerd").then(|| ns(&pid)).flatten()
        })
    })
}

fn rule(bridge: &str) -> [&str; 7] {
    ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
}

pub fn allow_bridge(bridge: &str) -> Result<(), String> {
    let r = rule(bridge);
    let check = iptables(&[&["-C"][..], &r[..]].concat()).map_err(|e| format!("iptables: {e}"))?;
    if check.status.success() {
        return Ok(());
    }
    let insert = iptables(&[&["-I"][..], &r[..]].concat()).map_err(|e| format!("iptables: {e}"))?;
    if insert.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables -I {}: {}",
            r.join(" "),
            String::from_utf8_lossy(&insert.stderr).trim()
        ))
    }
}

/// Removes the rule (every copy of it); for `weave reset` and test teardown.
pub fn remove_bridge_rule(bridge: &str) {
    let r = rule(bridge);
    for _ in 0..8 {
        match iptables(&[&["-D"][..], &r[..]].concat()) {
            Ok(o) if o.status.success() => continue,
            _ => return,
        }
    }
}
