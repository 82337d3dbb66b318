//! Response bodies: whole (small answers) or produced chunk by chunk from
//! an owned answer as the connection asks for them, so that a large answer
//! waiting on a slow client holds its own entries and nothing else (no
//! snapshot, no thread). Every body tells its connection when it has ended
//! (see [`super::conns`] for the response deadline).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

use super::conns::ConnState;

/// Every response's body type.
pub(super) type ResponseBody = BoxBody<Bytes, io::Error>;

/// A body held whole.
pub(super) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body held whole, as [`full`] (its length sent ahead), with `permit`
/// (a share of a bounded resource) held until the body is dropped, and
/// then until the connection has flushed it ([`tracked`]).
pub(super) fn full_holding<P>(bytes: impl Into<Bytes>, permit: P) -> ResponseBody
where
    P: Send + Sync + Unpin + 'static,
{
    Holding {
        body: full(bytes),
        _permit: permit,
    }
    .boxed()
}

struct Holding<P> {
    body: ResponseBody,
    _permit: P,
}

impl<P: Unpin> Body for Holding<P> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body produced by `chunks` as the connection asks for more; `permit`
/// (a share of a bounded resource) is held until the body is dropped.
pub(super) fn chunked<I, P>(chunks: I, permit: P) -> ResponseBody
where
    I: Iterator<Item = Bytes> + Send + Sync + Unpin + 'static,
    P: Send + Sync + Unpin + 'static,
{
    Chunks {
        chunks,
        _permit: permit,
    }
    .boxed()
}

struct Chunks<I, P> {
    chunks: I,
    _permit: P,
}

impl<I, P> Body for Chunks<I, P>
where
    I: Iterator<Item = Bytes> + Unpin,
    P: Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.chunks.next().map(|c| Ok(Frame::data(c))))
    }
}

/// Wraps a response body so that its connection learns when the body has
/// been handed over whole.
pub(super) fn tracked(body: ResponseBody, conn: Arc<ConnState>) -> ResponseBody {
    Tracked { body, conn }.boxed()
}

struct Tracked {
    body: ResponseBody,
    conn: Arc<ConnState>,
}

impl Drop for Tracked {
    /// hyper drops a body once it has taken its last bytes into its write
    /// buffer, where a client that does not read keeps them: what the body
    /// holds (a large answer's turn) goes with the response's flush
    /// instead, so that the turns bound the answers' memory.
    fn drop(&mut self) {
        let body = std::mem::replace(&mut self.body, full(Bytes::new()));
        self.conn.hold_until_flushed(Box::new(body));
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.conn.body_ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // hyper stops polling a body that says it has ended (a whole one,
        // once its data is taken): that is its end too.
        let end = self.body.is_end_stream();
        if end {
            self.conn.body_ended();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
