//! When each kind's watch was last opened: a layer of kube's client stack
//! that notes every watch request the API server answered with success.
//!
//! A watch that reopens after a failure and stays quiet (services, nodes
//! and EndpointSlices can be, for minutes) yields nothing to its follower:
//! kube's watcher passes on no bookmark. Without this, a run of failures
//! ended only at the next event or list, and one blip (an API server's
//! restart) left names said stale for minutes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::KINDS;

/// The plural of each of [`KINDS`], as in the API's paths (the watch's
/// tests check them against its resources').
pub(crate) const PLURALS: [&str; 4] = ["pods", "services", "endpointslices", "nodes"];

/// When each kind's watch was last answered with success (a lock taken
/// once a watch request and once a rebuild, twice a second).
#[derive(Default)]
pub(crate) struct WatchesOpened {
    at: Mutex<[Option<Instant>; KINDS.len()]>,
}

impl WatchesOpened {
    pub(crate) fn new() -> Arc<WatchesOpened> {
        Arc::default()
    }

    fn note(&self, kind: usize) {
        self.at.lock().expect("watches opened lock")[kind] = Some(Instant::now());
    }

    /// When `kind`'s watch was last opened, if ever.
    pub(crate) fn at(&self, kind: usize) -> Option<Instant> {
        self.at.lock().expect("watches opened lock")[kind]
    }

    /// The layer that notes into `self`.
    pub(crate) fn layer(self: &Arc<Self>) -> NoteOpenedLayer {
        NoteOpenedLayer(self.clone())
    }
}

pub(crate) struct NoteOpenedLayer(Arc<WatchesOpened>);

impl<S> tower::Layer<S> for NoteOpenedLayer {
    type Service = NoteOpened<S>;

    fn layer(&self, inner: S) -> NoteOpened<S> {
        NoteOpened {
            inner,
            opened: self.0.clone(),
        }
    }
}

/// The kind a request watches, if it is a watch (`?watch=true` on a
/// collection's path).
pub(crate) fn watched_kind<B>(request: &http::Request<B>) -> Option<usize> {
    let uri = request.uri();
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let plural = uri.path().rsplit('/').next()?;
    watching
        .then(|| PLURALS.iter().position(|p| *p == plural))
        .flatten()
}

/// kube's client stack with watch answers noted.
#[derive(Clone)]
pub(crate) struct NoteOpened<S> {
    inner: S,
    opened: Arc<WatchesOpened>,
}

impl<S, B, R> tower::Service<http::Request<B>> for NoteOpened<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let kind = watched_kind(&request);
        let opened = self.opened.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if let Some(kind) = kind
                && response.status().is_success()
            {
                opened.note(kind);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_told_from_lists_by_their_query() {
        let request = |uri: &str| http::Request::get(uri).body(()).unwrap();
        let kind = |uri| watched_kind(&request(uri));
        assert_eq!(kind("/api/v1/pods?watch=true&resourceVersion=5"), Some(0));
        assert_eq!(
            kind("/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&watch=true"),
            Some(2)
        );
        assert_eq!(kind("/api/v1/nodes?timeoutSeconds=270&watch=true"), Some(3));
        // A list (its pages too) is no watch: only its whole end counts.
        assert_eq!(kind("/api/v1/services?limit=500"), None);
        assert_eq!(kind("/api/v1/services?limit=500&continue=x"), None);
        assert_eq!(kind("/version?watch=true"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_watch_opened_after_a_failure_is_told() {
        let step = std::time::Duration::from_millis(5);
        let opened = WatchesOpened::new();
        tokio::time::sleep(step).await;
        let failure = Instant::now();
        assert_eq!(opened.at(1), None);
        tokio::time::sleep(step).await;
        opened.note(1);
        let at = opened.at(1).unwrap();
        assert!(at > failure && at <= Instant::now());
        assert_eq!(opened.at(0), None, "another kind");
    }
}
