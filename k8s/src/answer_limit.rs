//! Answers of the Kubernetes API read a bounded piece at a time: a layer of
//! kube's client stack that cuts off a watch's answer once one of its lines
//! (an event) passes `max` bytes, and any other answer (a list's page) once
//! it does.
//!
//! The API server sends a watch as one line of JSON per event, which kube
//! decodes and drops one at a time, with no bound on a line's length; and a
//! list's page as one document, which kube reads whole before decoding it.
//! A server, or a proxy in front of it, that sends without end (a name that
//! never closes, newlines without end) would otherwise take memory until
//! the process is killed, whatever `--k8s-max-objects` says: that bounds
//! objects, not bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::WatchStats;
use crate::opened::watched_kind;

/// The error an answer cut off ends with (kube says it as the watch's
/// error, which is counted and retried).
#[derive(Debug, thiserror::Error)]
#[error(
    "the Kubernetes API sent more than {max} bytes of one list page or watch event (larger \
     than --k8s-max-answer-bytes): cut off"
)]
pub(crate) struct AnswerTooLarge {
    max: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer, `max` bytes a line, counting what it cuts off into `stats`.
pub(crate) struct AnswerLimitLayer {
    pub(crate) max: u64,
    pub(crate) stats: Arc<WatchStats>,
}

impl<S> tower::Layer<S> for AnswerLimitLayer {
    type Service = AnswerLimit<S>;

    fn layer(&self, inner: S) -> AnswerLimit<S> {
        AnswerLimit {
            inner,
            max: self.max,
            stats: self.stats.clone(),
        }
    }
}

/// kube's client stack with each answer's lines bounded.
#[derive(Clone)]
pub(crate) struct AnswerLimit<S> {
    inner: S,
    max: u64,
    stats: Arc<WatchStats>,
}

impl<S, B, R> tower::Service<http::Request<B>> for AnswerLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = http::Response<LineLimited<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let lines = watched_kind(&request).is_some();
        let answer = self.inner.call(request);
        let (max, stats) = (self.max, self.stats.clone());
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| LineLimited {
                inner,
                max,
                lines,
                line: 0,
                stats,
            }))
        })
    }
}

/// A body that ends with [`AnswerTooLarge`] once more than `max` bytes
/// came in one line (`lines`: a watch, read a line at a time), or in all
/// (a list's page, read whole).
pub(crate) struct LineLimited<B> {
    inner: B,
    max: u64,
    lines: bool,
    /// Bytes of the line under way (of the whole body, unless `lines`).
    line: u64,
    stats: Arc<WatchStats>,
}

impl<B> Body for LineLimited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.line > this.max {
            // Cut off already: nothing more is read.
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let over = if this.lines {
                // Every line the chunk ends or holds whole, and the one it
                // begins.
                data.split(|&b| b == b'\n').enumerate().any(|(i, piece)| {
                    if i > 0 {
                        this.line = 0;
                    }
                    this.line = this.line.saturating_add(piece.len() as u64);
                    this.line > this.max
                })
            } else {
                this.line = this.line.saturating_add(data.len() as u64);
                this.line > this.max
            };
            if over {
                // Past `max` for good: nothing more is read.
                this.line = u64::MAX;
                this.stats.answers_too_large.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(AnswerTooLarge { max: this.max }))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.line > self.max || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A body of `chunks`, as a server would send them.
    fn body(
        chunks: &[&'static [u8]],
    ) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    /// `inner` bounded at `max` a line (`lines`: a watch's) or in all.
    fn limited<B>(inner: B, max: u64, lines: bool) -> (LineLimited<B>, Arc<WatchStats>) {
        let stats = Arc::new(WatchStats::default());
        let body = LineLimited {
            inner,
            max,
            lines,
            line: 0,
            stats: stats.clone(),
        };
        (body, stats)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lines_within_the_bound_pass_whole_however_long_the_answer() {
        // Three events of 8 bytes and their newlines, split across chunks
        // as they come: 27 bytes in all against a bound of 8 a line.
        let chunks: &[&[u8]] = &[b"{\"a\":1", b"}\n{\"b\":2}", b"\n{\"c\":3}\n"];
        let (body, stats) = limited(body(chunks), 8, true);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(stats.answers_too_large.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_line_past_the_bound_cuts_the_answer_off_and_is_counted() {
        // The second line runs 9 bytes over two chunks without ending: what
        // follows is never read.
        let chunks: &[&[u8]] = &[b"{\"a\":1}\n{\"name", b"\":\"x", b"yz\"}\n"];
        let (mut body, stats) = limited(body(chunks), 8, true);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"{\"a\":1}\n{\"name");
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("more than 8 bytes"), "{error}");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
        assert_eq!(stats.answers_too_large.load(Ordering::Relaxed), 1);
    }

    /// A line that ends inside a chunk is measured too, and so is one a
    /// chunk holds whole between two newlines.
    #[tokio::test(flavor = "current_thread")]
    async fn lines_ended_within_a_chunk_are_measured() {
        for chunks in [
            &[&b"{\"a\":"[..], b"123456}\n{}\n"][..],
            &[b"{}\n{\"a\":123456}\n{}\n"],
        ] {
            let (body, stats) = limited(body(chunks), 8, true);
            let error = body.collect().await.unwrap_err();
            assert!(error.to_string().contains("more than 8 bytes"), "{error}");
            assert_eq!(stats.answers_too_large.load(Ordering::Relaxed), 1);
        }
    }

    /// A list's page is read whole: its newlines do not start it over.
    #[tokio::test(flavor = "current_thread")]
    async fn a_list_s_page_is_bounded_whole() {
        let chunks: &[&[u8]] = &[b"{\n\n\n", b"\n\n\n", b"\n\n\n"];
        let (over, stats) = limited(body(chunks), 8, false);
        assert!(over.collect().await.is_err());
        assert_eq!(stats.answers_too_large.load(Ordering::Relaxed), 1);
        let (within, _) = limited(body(&chunks[..2]), 8, false);
        assert_eq!(within.collect().await.unwrap().to_bytes().len(), 7);
    }
}
