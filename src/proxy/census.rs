//! Counts the client connections being served. When the last of a crowd of them has gone,
//! the memory they used is handed back to the system: glibc's allocator keeps what is freed
//! for reuse, so without this a proxy that once held 1,000 attached terminals would stay
//! several MiB larger, idle, for the rest of its life.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A crowd: enough connections at once that what they leave behind is worth a trim.
const CROWD: usize = 64;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Held for as long as a client connection is served.
pub struct Counted(());

pub fn enter() -> Counted {
    let open = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
    PEAK.fetch_max(open, Ordering::Relaxed);
    Counted(())
}

impl Drop for Counted {
    fn drop(&mut self) {
        if OPEN.fetch_sub(1, Ordering::Relaxed) == 1 && PEAK.swap(0, Ordering::Relaxed) >= CROWD {
            // A trim walks every arena: not on a worker thread.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn_blocking(give_back);
            }
        }
    }
}

fn give_back() {
    super::splice::empty_pool();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
