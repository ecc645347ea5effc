//! A client stream whose reads a test can stop, meter and resume, to play a
//! client that stops reading its socket.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A switch that stops and resumes the reads of a [`Gated`] stream.
pub struct ReadGate {
    /// Bytes that reads may still return, or `u64::MAX` while the gate is open.
    allowed: AtomicU64,
    waiting: Mutex<Option<Waker>>,
}

impl Default for ReadGate {
    fn default() -> ReadGate {
        ReadGate {
            allowed: AtomicU64::new(u64::MAX),
            waiting: Mutex::new(None),
        }
    }
}

impl ReadGate {
    /// Makes reads wait until the gate allows more bytes.
    pub fn close(&self) {
        self.allowed.store(0, Ordering::SeqCst);
    }

    /// Lets reads return `bytes` more bytes, then makes them wait.
    pub fn allow(&self, bytes: u64) {
        self.allowed.store(bytes, Ordering::SeqCst);
        if let Some(waker) = self.waiting.lock().unwrap().take() {
            waker.wake();
        }
    }

    /// Lets reads return everything from now on.
    pub fn open(&self) {
        self.allow(u64::MAX);
    }
}

/// A stream whose reads return no more than its [`ReadGate`] allows.
pub struct Gated<S> {
    pub inner: S,
    pub gate: Arc<ReadGate>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Gated<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let allowed = self.gate.allowed.load(Ordering::SeqCst);
        if allowed == 0 {
            *self.gate.waiting.lock().unwrap() = Some(cx.waker().clone());
            // The gate may have opened before the waker was stored.
            if self.gate.allowed.load(Ordering::SeqCst) == 0 {
                return Poll::Pending;
            }
        }
        if allowed == u64::MAX || allowed == 0 {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }

        let limit = buf
            .remaining()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        let result = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let read = limited.filled().len();
        buf.advance(read);
        self.gate.allowed.fetch_sub(read as u64, Ordering::SeqCst);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gated<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
