//! A started container's `/etc/hosts` gets its weave addresses under its own name, so that
//! `hostname -i` and lookups of its own name give the weave address (Docker's file has the
//! docker bridge address). Written from outside, through `/proc/PID/root`, so the image's user
//! and tools do not matter; `--no-rewrite-hosts` turns it off.

use crate::weave_cidr::Cidr;

/// The whole file: the container's names at its weave addresses, `--add-host` entries, and the
/// usual localhost lines, between markers that say who wrote it.
pub fn contents(fqdn: &str, cidrs: &[Cidr], extra_hosts: &[String]) -> String {
    let fqdn = fqdn.trim_end_matches('.');
    let names = match fqdn.split_once('.') {
        Some((short, _)) => format!("{fqdn} {short}"),
        None => fqdn.to_string(),
    };
    let mut out = String::from("# created by Weave - BEGIN\n# container hostname\n");
    for c in cidrs {
        out.push_str(&format!("{:<15} {names}\n", c.addr.to_string()));
    }
    out.push_str("\n# static names added with --add-host\n");
    for e in extra_hosts {
        // Docker's form is NAME:IP (the IP may be IPv6, so split at the first colon).
        if let Some((name, ip)) = e.split_once(':') {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    out.push_str(
        "\n# default localhost entries\n\
         127.0.0.1       localhost\n\
         ::1             ip6-localhost ip6-loopback\n\
         fe00::0         ip6-localnet\n\
         ff00::0         ip6-mcastprefix\n\
         ff02::1         ip6-allnodes\n\
         ff02::2         ip6-allrouters\n\
         # created by Weave - END\n",
    );
    out
}

/// Writes the file in place (same inode: it is a bind mount inside the container).
///
/// The path is resolved as if chrooted into the container (`RESOLVE_IN_ROOT`): a plain
/// `/proc/PID/root/etc/hosts` follows absolute symlinks inside the container into the proxy's
/// own file system. (Docker's init layer makes `/etc` a directory today; this does not rely
/// on it.) Kernels before 5.6 have no openat2; there the plain path is used.
pub async fn write(pid: u32, text: &str) -> std::io::Result<()> {
    let text = text.to_string();
    tokio::task::spawn_blocking(move || write_blocking(pid, &text))
        .await
        .map_err(std::io::Error::other)?
}

fn write_blocking(pid: u32, text: &str) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use std::io::Write;

    let root = std::fs::File::open(format!("/proc/{pid}/root"))?;
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut file = match openat2(&root, "etc/hosts", how) {
        Ok(fd) => std::fs::File::from(fd),
        Err(nix::errno::Errno::ENOSYS) => std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(format!("/proc/{pid}/root/etc/hosts"))?,
        Err(e) => return Err(e.into()),
    };
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file() {
        let c: Vec<Cidr> = vec![
            "10.2.1.1/24".parse().unwrap(),
            "10.2.2.1/24".parse().unwrap(),
        ];
        let f = contents(
            "pingme.weave.local.",
            &c,
            &["db:10.0.0.9".to_string(), "v6:fe80::1".to_string()],
        );
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(lines[0], "# created by Weave - BEGIN");
        assert_eq!(lines[2], "10.2.1.1        pingme.weave.local pingme");
        assert_eq!(lines[3], "10.2.2.1        pingme.weave.local pingme");
        assert!(
            f.contains("10.0.0.9\tdb\n") && f.contains("fe80::1\tv6\n"),
            "{f}"
        );
        assert!(f.contains("127.0.0.1       localhost\n"));
        assert!(f.ends_with("# created by Weave - END\n"));
        let f = contents("abc123", &c[..1], &[]);
        assert!(f.contains("10.2.1.1        abc123\n"), "{f}");
    }
}
