//! weavewait: the first program of a container the proxy attaches to the weave network.
//!
//! It waits until the weave interface (`ethwe`) is up, has carrier and carries an IPv4 address,
//! then execs its arguments (the container's original entrypoint and command), so that the
//! application becomes PID 1 with its own signals, stdin, tty and exit code, and never runs
//! without its network. The wait is bounded: on time-out it says so and exits non-zero.
//!
//! Static and std-only but for `libc`, so that it runs in any image, even one without a libc.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const DEFAULT_IFACE: &str = "ethwe";
/// Present when the proxy learnt only at start (a legacy start body) that the container shares
/// the host's or another container's network namespace: there is no interface of ours to wait
/// for, so the command runs at once.
const NOOP_MARKER: &str = "/w-noop";
const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
/// The proxy configures the interface within milliseconds of the container starting.
const POLL: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("No command specified");
        return ExitCode::from(1);
    };
    let iface = std::env::var("WEAVEWAIT_IFACE").unwrap_or_else(|_| DEFAULT_IFACE.to_string());
    let timeout = match std::env::var("WEAVEWAIT_TIMEOUT") {
        Ok(v) => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            _ => {
                eprintln!("weavewait: WEAVEWAIT_TIMEOUT=\"{v}\" is not a number of seconds");
                return ExitCode::from(1);
            }
        },
        Err(_) => Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
    };

    let shared_namespace = std::path::Path::new(NOOP_MARKER).exists();
    if !shared_namespace && let Err(state) = wait_for(&iface, timeout) {
        eprintln!(
            "weavewait: timed out after {:.1}s waiting for the weave network interface {iface} ({state}); \
             is the container being attached by the weave proxy?",
            timeout.as_secs_f64()
        );
        return ExitCode::from(1);
    }

    // exec only returns on failure. std looks the program up in this process's own PATH.
    let err = Command::new(program).args(rest).exec();
    let name = program.to_string_lossy();
    // The daemon's own wording for the same failures, and the shell's exit codes.
    match err.kind() {
        std::io::ErrorKind::NotFound if name.contains('/') => {
            eprintln!("exec: \"{name}\": stat {name}: no such file or directory");
            ExitCode::from(127)
        }
        std::io::ErrorKind::NotFound => {
            eprintln!("exec: \"{name}\": executable file not found in $PATH");
            ExitCode::from(127)
        }
        std::io::ErrorKind::PermissionDenied => {
            eprintln!("exec: \"{name}\": permission denied");
            ExitCode::from(126)
        }
        _ => {
            eprintln!("exec: \"{name}\": {err}");
            ExitCode::from(126)
        }
    }
}

/// Polls until the interface is ready; on time-out, says what it last saw.
fn wait_for(iface: &str, timeout: Duration) -> Result<(), &'static str> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = iface_state(iface);
        if state == State::Ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(state.describe());
        }
        std::thread::sleep(POLL);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Missing,
    Down,
    NoCarrier,
    NoAddress,
    Ready,
}

impl State {
    fn describe(&self) -> &'static str {
        match self {
            State::Missing => "it does not exist",
            State::Down => "it is down",
            State::NoCarrier => "it has no carrier",
            State::NoAddress => "it has no IPv4 address",
            State::Ready => "ready",
        }
    }
}

fn iface_state(iface: &str) -> State {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return State::Missing;
    }
    // SAFETY: a plain socket used only for interface ioctls, closed below; `ifreq` is zeroed
    // and its name NUL-terminated (checked length above).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return State::Missing;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        let state = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            State::Missing
        } else {
            let flags = i32::from(req.ifr_ifru.ifru_flags);
            if flags & libc::IFF_UP == 0 {
                State::Down
            } else if flags & libc::IFF_RUNNING == 0 {
                State::NoCarrier
            } else if libc::ioctl(fd, libc::SIOCGIFADDR, &mut req) < 0 {
                State::NoAddress
            } else {
                State::Ready
            }
        };
        libc::close(fd);
        state
    }
}
