//! A client that shuts down its sending side after its request (HTTP/1.0 tools, `nc -N`,
//! scripts) still gets its answer, and the daemon sees the same half-close it would see
//! without the proxy: its own handlers decide what that means (`/_ping` answers, an `events`
//! stream ends), so nothing is guessed here.
//!
//! [`EofWatch`] wraps the client's connection and notes its end of input (its [`Lookout`]
//! reads ahead for it while an answer streams); [`Closable`] wraps
//! the lane's daemon connection and shuts down its writing side once asked. The lane asks
//! when the client has ended its input and the daemon has begun to answer (before that, the
//! request itself might not all be on its way).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::upstream::BoxIo;

/// Set once the client's connection has read end-of-file.
#[derive(Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The client's connection, shared between hyper (which reads and writes it) and the
/// connection's task, which looks ahead for the end of input while an answer is on its way.
/// hyper itself does not read mid-message when half-closes are allowed, so without that look
/// a client that went away would go unnoticed until the next write, and an idle stream
/// (`events`, `logs -f` of a quiet container) would hold its daemon connection open.
pub struct EofWatch(Arc<Mutex<Shared>>);

/// The connection task's handle on an [`EofWatch`].
pub struct Lookout(Arc<Mutex<Shared>>);

struct Shared {
    io: BoxIo,
    /// Read ahead by the lookout and not yet handed to hyper.
    ahead: Vec<u8>,
    eof: Flag,
}

/// How much the lookout reads ahead: a request a pipelining client sent next is left in the
/// socket beyond this, and read by hyper when it wants it.
const AHEAD: usize = 4096;

impl EofWatch {
    pub fn new(io: BoxIo, eof: Flag) -> (EofWatch, Lookout) {
        let shared = Arc::new(Mutex::new(Shared {
            io,
            ahead: Vec::new(),
            eof,
        }));
        (EofWatch(shared.clone()), Lookout(shared))
    }

    /// The connection and what was read ahead of hyper, once the lookout is gone.
    pub fn into_inner(self) -> (BoxIo, Vec<u8>) {
        match Arc::try_unwrap(self.0) {
            Ok(m) => {
                let s = m.into_inner().unwrap_or_else(|p| p.into_inner());
                (s.io, s.ahead)
            }
            // The lookout lives as long as the connection's task, which calls this only after
            // dropping it.
            Err(_) => unreachable!("the lookout outlived its connection"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lookout {
    /// Reads ahead of hyper, to see the client end its input; a no-op once something has been
    /// read ahead or the end seen.
    pub fn poll_look(&self, cx: &mut Context<'_>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !s.ahead.is_empty() || s.eof.is_set() {
            return;
        }
        let mut tmp = [0u8; AHEAD];
        let mut buf = ReadBuf::new(&mut tmp);
        match Pin::new(&mut s.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => s.eof.set(),
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().to_vec();
                s.ahead = filled;
            }
            // hyper sees the error itself on its next read or write.
            Poll::Ready(Err(_)) | Poll::Pending => return,
        }
        // hyper may be waiting to read what was just taken from under it, and the socket will
        // not wake it again for that: the task is polled once more.
        cx.waker().wake_by_ref();
    }
}

impl AsyncRead for EofWatch {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.lock();
        if !s.ahead.is_empty() {
            let n = s.ahead.len().min(buf.remaining());
            buf.put_slice(&s.ahead[..n]);
            s.ahead.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if s.eof.is_set() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        ready!(Pin::new(&mut s.io).poll_read(cx, buf))?;
        if room && buf.filled().len() == before {
            s.eof.set();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for EofWatch {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_shutdown(cx)
    }
}

pub struct Closable {
    inner: BoxIo,
    wanted: Flag,
    done: bool,
}

impl Closable {
    pub fn new(inner: BoxIo, wanted: Flag) -> Closable {
        Closable {
            inner,
            wanted,
            done: false,
        }
    }

    /// Shuts the writing side down if that has been asked for and not yet done.
    fn poll_pending_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.wanted.is_set() && !self.done {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.done = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Closable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_pending_shutdown(cx))?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Closable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
