//! The splice of a hijacked stream: bytes copied both ways until both sides are done. An EOF
//! from one side becomes a write shutdown towards the other, so stdin EOF reaches the container
//! while its output keeps flowing.
//!
//! A hijacked connection spends most of its life idle (an attached terminal, a `logs -f` of a
//! quiet container), so a direction holds a buffer only while it has bytes to move: the buffer
//! goes back to a small shared pool whenever its side has nothing to read. Idle streams cost
//! their sockets and a few hundred bytes of state, not 2 × 64 KiB each.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::upstream::BoxIo;

/// Large enough that a busy stream moves the daemon's 32 KiB writes in one go.
const BUF_SIZE: usize = 64 * 1024;
/// Buffers kept for reuse, so that busy streams do not go to the allocator at every pause;
/// beyond this they are freed (bounds what idle streams leave behind: 1 MiB).
const POOL_MAX: usize = 16;

static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

fn take_buffer() -> Box<[u8]> {
    let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
    pooled.unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
    {
        pool.push(buf);
    }
}

/// Frees the pooled buffers (nothing is streaming).
pub fn empty_pool() {
    if let Ok(mut pool) = POOL.lock() {
        *pool = Vec::new();
    }
}

/// Splices the client's side of a hijacked connection with the daemon's, once hyper has
/// handed the latter over. `early`: bytes the client sent right behind the request head, which
/// hyper has read already.
pub async fn splice(client: BoxIo, early: Bytes, upgrade: hyper::upgrade::OnUpgrade) {
    let upstream = match upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!("daemon side of hijacked stream: {e}");
            return;
        }
    };
    let mut upstream = TokioIo::new(upstream);
    if !early.is_empty() && upstream.write_all(&early).await.is_err() {
        return;
    }
    // It may share the whole of hyper's read buffer.
    drop(early);
    if let Err(e) = copy_both(client, upstream).await {
        tracing::debug!("hijacked stream: {e}");
    }
}

/// One direction of the copy.
#[derive(Default)]
struct Flow {
    buf: Option<Box<[u8]>>,
    /// `buf[pos..end]` is read and not yet written.
    pos: usize,
    end: usize,
    /// Written since the last flush (TLS sessions hold what they are given until flushed).
    unflushed: bool,
    eof: bool,
    done: bool,
}

impl Flow {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut from: Pin<&mut R>,
        mut to: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.pos == self.end && !self.eof {
                let buf = self.buf.get_or_insert_with(take_buffer);
                let mut rb = ReadBuf::new(buf);
                match from.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        self.pos = 0;
                        self.end = n;
                        self.eof = n == 0;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing to move: the buffer is not needed until there is.
                        if let Some(buf) = self.buf.take() {
                            give_back(buf);
                        }
                        if self.unflushed {
                            ready!(to.as_mut().poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.end {
                let Some(buf) = self.buf.as_ref() else {
                    break;
                };
                let n = ready!(to.as_mut().poll_write(cx, &buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.unflushed = true;
            }
            if self.eof {
                if let Some(buf) = self.buf.take() {
                    give_back(buf);
                }
                // Flushes, then half-closes.
                ready!(to.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies `a` → `b` and `b` → `a` until both have reached EOF (each passed on as a write
/// shutdown), or either fails, which ends both.
///
/// Each direction is a task of its own: an exec's stdin and output then move at the same
/// time on a runtime with more than one worker (a 256 MiB `cat` ran 0.12-0.17x of direct
/// faster in interleaved runs), and neither is polled for the other's wake-ups.
pub async fn copy_both<A, B>(a: A, b: B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Send + 'static,
    B: AsyncRead + AsyncWrite + Send + 'static,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let mut forth = tokio::spawn(one_way(a_read, b_write));
    let mut back = tokio::spawn(one_way(b_read, a_write));
    let joined = |r: Result<io::Result<()>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(io::Error::other(e)))
    };
    // The first to end decides: an error breaks the stream both ways; an EOF leaves the other
    // direction running to its own end.
    let (first, other) = tokio::select! {
        r = &mut forth => (joined(r), back),
        r = &mut back => (joined(r), forth),
    };
    if first.is_err() {
        other.abort();
        return first;
    }
    joined(other.await)
}

async fn one_way<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut flow = Flow::default();
    let result =
        std::future::poll_fn(|cx| flow.poll_copy(cx, Pin::new(&mut from), Pin::new(&mut to))).await;
    if let Some(buf) = flow.buf.take() {
        give_back(buf);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (mut client, proxy_client) = tokio::io::duplex(1024);
        let (proxy_daemon, mut daemon) = tokio::io::duplex(1024);
        let splice = tokio::spawn(copy_both(proxy_client, proxy_daemon));
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sent = input.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            // stdin EOF: the daemon must see it, and its answer must still arrive.
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        daemon.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, input);
        daemon.write_all(b"bye").await.unwrap();
        daemon.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"bye");
        splice.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn idle_streams_hold_no_buffer() {
        let (_client, mut proxy_client) = tokio::io::duplex(64);
        let (mut proxy_daemon, _daemon) = tokio::io::duplex(64);
        let mut a_to_b = Flow::default();
        let mut b_to_a = Flow::default();
        std::future::poll_fn(|cx| {
            assert!(
                a_to_b
                    .poll_copy(cx, Pin::new(&mut proxy_client), Pin::new(&mut proxy_daemon))
                    .is_pending()
            );
            assert!(
                b_to_a
                    .poll_copy(cx, Pin::new(&mut proxy_daemon), Pin::new(&mut proxy_client))
                    .is_pending()
            );
            Poll::Ready(())
        })
        .await;
        assert!(a_to_b.buf.is_none() && b_to_a.buf.is_none());
    }
}
