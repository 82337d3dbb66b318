//! Response bodies: whole (small answers) or streamed in chunks from the
//! thread that serialises them, so a query over a million flows holds one
//! chunk at a time, and a client that stops reading is cut off after the
//! write timeout instead of holding a thread and a snapshot forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// Every response's body type.
pub(super) type ResponseBody = BoxBody<Bytes, io::Error>;

/// A body held whole.
pub(super) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Bytes collected before a chunk is handed to the connection.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for the connection, at most.
const CHUNKS_QUEUED: usize = 4;

/// The receiving end, as a hyper body: chunks already taken, then the rest.
struct Chunks {
    taken: Vec<Bytes>,
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if !self.taken.is_empty() {
            let first = self.taken.remove(0);
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.rx.poll_recv(cx).map(|m| m.map(|r| r.map(Frame::data)))
    }
}

/// Where a streamed answer arrives.
pub(super) struct ChunkReceiver {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl ChunkReceiver {
    /// The body: whole (with a length) if the answer fits in one chunk, as
    /// most do; else streamed.
    pub(super) async fn into_body(mut self) -> ResponseBody {
        let first = match self.rx.recv().await {
            None => return full(Bytes::new()),
            Some(Err(e)) => return error_body(e),
            Some(Ok(first)) => first,
        };
        match self.rx.recv().await {
            None => full(first),
            Some(Err(e)) => error_body(e),
            Some(Ok(second)) => Chunks {
                taken: vec![first, second],
                rx: self.rx,
            }
            .boxed(),
        }
    }
}

fn error_body(e: io::Error) -> ResponseBody {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Err(e));
    Chunks {
        taken: Vec::new(),
        rx,
    }
    .boxed()
}

/// The writing end: an `io::Write` for a blocking thread (serde_json writes
/// into it); each full chunk waits for room at most `timeout`.
pub(super) struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// A streamed answer's two ends. Call from within the runtime; write from a
/// blocking thread.
pub(super) fn streamed(timeout: Duration) -> (ChunkReceiver, ChunkWriter) {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let writer = ChunkWriter {
        buf: Vec::with_capacity(CHUNK_BYTES),
        tx,
        runtime: tokio::runtime::Handle::current(),
        timeout,
    };
    (ChunkReceiver { rx }, writer)
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        let send = tokio::time::timeout(self.timeout, self.tx.send(Ok(chunk)));
        match self.runtime.block_on(send) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "client gone")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client not reading",
            )),
        }
    }

    /// Ends the body with an error (the connection is then cut).
    pub(super) fn fail(self, e: io::Error) {
        let _ = self.tx.try_send(Err(e));
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
