//! A stream (standard input, a FIFO) read on a thread of its own, so that
//! the worker reading the capture never blocks on it: a pipe that brings
//! nothing for a while (`tcpdump -U -w - | flowtap -r - --listen` on a quiet
//! link) held the worker in `read`, and with it every snapshot, which waits
//! for every worker: answers stayed empty until the pipe brought more.
//!
//! Once [`Pipe::stop_blocking`] is called, a read that finds nothing within
//! [`WAIT`] says so ([`std::io::ErrorKind::WouldBlock`], and [`Waiting`]),
//! and the reader tries again later; until then (while the file's header is
//! read) reads wait.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// Bytes a read of the stream asks for at once.
const CHUNK: usize = 64 << 10;

/// Chunks read ahead at most: 1 MiB held.
const CHUNKS_AHEAD: usize = 16;

/// How long a read waits for the stream before it says nothing came.
pub const WAIT: Duration = Duration::from_millis(20);

/// Whether the last read found nothing yet (as opposed to failing), for the
/// reader that sees only that the read failed.
#[derive(Clone, Debug, Default)]
pub struct Waiting(Arc<AtomicBool>);

impl Waiting {
    /// Whether the last read found nothing yet; cleared by asking.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// A stream's bytes as its thread read them.
pub struct Pipe {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    blocking: Arc<AtomicBool>,
    waiting: Waiting,
    ended: bool,
}

impl Pipe {
    /// Reads `input` on a thread of its own, a chunk at a time.
    pub fn new(mut input: impl Read + Send + 'static) -> std::io::Result<Pipe> {
        let (tx, rx): (SyncSender<_>, _) = sync_channel(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("flowtap-pipe".into())
            .spawn(move || {
                loop {
                    let mut chunk = vec![0; CHUNK];
                    let read = match input.read(&mut chunk) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        read => read,
                    };
                    let end = !matches!(read, Ok(n) if n > 0);
                    let sent = read.map(|n| {
                        chunk.truncate(n);
                        chunk
                    });
                    // The reader went away (the file was closed): done.
                    if tx.send(sent).is_err() || end {
                        return;
                    }
                }
            })?;
        Ok(Pipe {
            chunks: rx,
            chunk: Vec::new(),
            at: 0,
            blocking: Arc::new(AtomicBool::new(true)),
            waiting: Waiting::default(),
            ended: false,
        })
    }

    /// What tells a failed read from one that found nothing yet.
    pub fn waiting(&self) -> Waiting {
        self.waiting.clone()
    }

    /// The switch that makes reads stop waiting ([`Pipe::stop_blocking`])
    /// once the pipe is handed on.
    pub fn blocking(&self) -> Arc<AtomicBool> {
        self.blocking.clone()
    }
}

/// Makes reads of the pipe behind `blocking` wait at most [`WAIT`].
pub fn stop_blocking(blocking: &AtomicBool) {
    blocking.store(false, Ordering::Relaxed);
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.at == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            let next = if self.blocking.load(Ordering::Relaxed) {
                self.chunks
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.chunks.recv_timeout(WAIT)
            };
            match next {
                Ok(Ok(chunk)) if chunk.is_empty() => self.ended = true,
                Ok(Ok(chunk)) => (self.chunk, self.at) = (chunk, 0),
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.waiting.0.store(true, Ordering::Relaxed);
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Err(RecvTimeoutError::Disconnected) => self.ended = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes come through whole and in order; a pipe that brings nothing
    /// says so once it no longer blocks, and its end is the end.
    #[test]
    fn a_quiet_pipe_says_nothing_came_and_its_bytes_come_whole() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Fed(Receiver<Vec<u8>>);
        impl Read for Fed {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Ok(bytes) = self.0.recv() else {
                    return Ok(0);
                };
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
        }
        let mut pipe = Pipe::new(Fed(rx)).unwrap();
        let waiting = pipe.waiting();
        tx.send(b"head".to_vec()).unwrap();
        let mut head = [0; 4];
        pipe.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"head");
        stop_blocking(&pipe.blocking());
        let mut buf = [0; 16];
        let quiet = pipe.read(&mut buf).unwrap_err();
        assert_eq!(quiet.kind(), std::io::ErrorKind::WouldBlock);
        assert!(waiting.take());
        assert!(!waiting.take(), "cleared by asking");
        tx.send(b"more".to_vec()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pipe.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"more");
        drop(tx);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pipe.read(&mut buf).unwrap(), 0);
        assert_eq!(pipe.read(&mut buf).unwrap(), 0);
    }
}
