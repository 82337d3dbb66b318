//! The Kubernetes API as the source of names: pods, services, EndpointSlices
//! and nodes followed with kube-rs watchers (list once, then watch; resumed
//! from the last resourceVersion when a watch ends, relisted on `410 Gone`;
//! bookmarks keep the resume point fresh).
//!
//! Objects are decoded straight into flowtap's trimmed types
//! ([`crate::objects`]): what the API sends beyond the fields flowtap reads
//! (managed fields, specs, environments) is skipped, never held. They are
//! kept in one map per kind, bounded by `max_objects`, and the address
//! mapping is rebuilt from them at most every [`REBUILD_EVERY`] when
//! something changed.
//!
//! The watch runs on a thread and runtime of its own: a slow API server or a
//! large rebuild delays names, never a query or a capture.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as ApiMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::{Deserialize, Deserializer};

use crate::answer_limit::AnswerLimitLayer;
use crate::inventory::Inventory;
use crate::objects::{EndpointSlice, Node, ObjectMeta, Pod, Service};
use crate::opened::WatchesOpened;
use crate::{KINDS, WatchStats};

/// The mapping is rebuilt at most this often.
pub const REBUILD_EVERY: Duration = Duration::from_millis(500);

/// Pods that finished are left out by the API (a finished pod is deleted
/// from this view, and kept as gone pods are).
const RUNNING_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// How the watch is set up.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Objects kept at most, all kinds together; more are counted and left
    /// out (their addresses go unnamed).
    pub max_objects: usize,
    /// How long any request may go without a byte from the API server
    /// before it is given up and tried again: a list, or a watch being
    /// opened, that is never answered (a proxy or load balancer that keeps
    /// the connection and drops the request) would otherwise stop that
    /// kind's names from changing for good, with nothing said. The server
    /// ends the watches before it (290 s, or sooner under a shorter
    /// timeout), so that a quiet watch is not cut.
    pub request_timeout: Duration,
    /// The most bytes of one page of a list or one watch event (a line of
    /// the API's answer): a larger one is cut off, counted and tried again
    /// as a failure, so that a server or proxy sending without end holds
    /// this much at most per kind.
    pub max_answer_bytes: u64,
    /// How long a pod deleted or finished is kept ([`crate::GONE_PODS_KEPT`] by
    /// default): as long as its flows stay in answers, the longest idle
    /// timeout.
    pub gone_pods_kept: Duration,
}

/// How long the server holds a watch open before ending it (kube's default,
/// and the most [`WatchConfig::request_timeout`] lets through).
const WATCH_TIMEOUT_S: u32 = 290;

/// Failures this far apart are not in a row: the waits start over (as
/// client-go's backoff resets after two minutes without one).
const FAILURES_APART: Duration = Duration::from_secs(120);

/// Waits between a failed request and the next, doubling from the first to
/// the last (as client-go's reflector does), with up to a quarter more at
/// random so that many watchers do not ask together; back to the first
/// once a list or an event came through.
const RETRY_FIRST: Duration = Duration::from_millis(800);
const RETRY_LAST: Duration = Duration::from_secs(30);

/// A watch opened after a run of failures ends the run once it has stayed
/// open this long (four rebuilds).
const OPEN_SETTLES: Duration = Duration::from_secs(2);

/// A kind that left objects out for want of room is listed again, once
/// there is room, at most this often.
const RELIST_FOR_ROOM_EVERY: Duration = Duration::from_secs(300);

/// A kind whose watch has failed this long without a list or an event
/// getting through has names that may be stale (pods made since unnamed,
/// pods deleted since still listed, as idle): answers say names are not
/// known, until one gets through. Longer than an API server's restart.
const STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "no Kubernetes API to follow: {0} (in a pod, the service account's token is mounted \
         at /var/run/secrets/kubernetes.io/serviceaccount; outside, set KUBECONFIG)"
    )]
    Config(String),
    #[error("cannot start the Kubernetes watch: {0}")]
    Start(String),
}

/// A running watch; dropping it stops it.
pub struct Watch {
    current: Arc<ArcSwap<Inventory>>,
    generation: Arc<AtomicU64>,
    seen: u64,
    pub stats: Arc<WatchStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Connects (the kubeconfig, `KUBECONFIG` or `~/.kube/config`, else the
    /// in-cluster configuration: kube's `Config::infer`) and starts
    /// following the four kinds.
    pub fn start(config: WatchConfig, stats: Arc<WatchStats>) -> Result<Watch, WatchError> {
        let current = Arc::new(ArcSwap::from_pointee(Inventory::default()));
        let generation = Arc::new(AtomicU64::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = Shared {
            current: current.clone(),
            generation: generation.clone(),
            stats: stats.clone(),
            store: Mutex::default(),
            max_objects: config.max_objects,
            gone_pods_kept: config.gone_pods_kept,
            dirty: AtomicBool::new(false),
            listed: Default::default(),
            left_out: Default::default(),
            opened: WatchesOpened::new(),
            failure_heard_within: RETRY_LAST * 5 / 4 + config.request_timeout + RETRY_FIRST,
        };
        let thread = std::thread::Builder::new()
            .name("flowtap-k8s".into())
            .spawn(move || {
                // It reads the kubeconfig (or the service account's token).
                pipeline::privileges::give_up_all_but_reading_files();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started_tx.send(Err(WatchError::Start(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match connect(&config, &shared).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    let shared = Arc::new(shared);
                    tokio::select! {
                        () = follow_all(client, shared, config.request_timeout) => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| WatchError::Start(e.to_string()))?;
        started_rx
            .recv()
            .map_err(|e| WatchError::Start(e.to_string()))??;
        Ok(Watch {
            current,
            generation,
            seen: 0,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn current(&self) -> Arc<Inventory> {
        self.current.load_full()
    }

    /// True when the mapping changed since the last call.
    pub fn refresh(&mut self) -> bool {
        let now = self.generation.load(Ordering::Acquire);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// kube's client, with `watch`'s request timeout, its answers bounded
/// ([`AnswerLimitLayer`]) and the watches answered noted into `shared`.
async fn connect(watch: &WatchConfig, shared: &Shared) -> Result<Client, WatchError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| WatchError::Config(e.to_string()))?;
    config.read_timeout = Some(watch.request_timeout);
    // Counted from each request, not from when its pooled connection went
    // idle.
    config.reset_reader_on_write = true;
    // Every failure reaches `follow`, which counts it, says the names
    // stale after a minute and waits as it says: kube's own retries of a
    // 429, 503 or 504 (15 of them, waits growing to minutes) hid an outage
    // that long, uncounted.
    config.default_retry = false;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("flowtap/", env!("CARGO_PKG_VERSION"))),
    ));
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| WatchError::Config(e.to_string()))?;
    let answer_limit = AnswerLimitLayer {
        max: watch.max_answer_bytes,
        stats: shared.stats.clone(),
    };
    Ok(builder
        .with_layer(&answer_limit)
        .with_layer(&shared.opened.layer())
        .build())
}

/// The wait before the next try after `failures` failed ones in a row
/// ([`RETRY_FIRST`] to [`RETRY_LAST`]).
fn retry_after(failures: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_LAST);
    // A random quarter at most: std's hasher keys are random per instance.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    base + base.mul_f64((random % 1000) as f64 / 4000.0)
}

/// The longest a server's `retryAfterSeconds` is followed.
const ASKED_WAIT_MOST: Duration = Duration::from_secs(300);

/// How long the API server asked to be left before the next try: a 429 of
/// its priority and fairness (or a 5xx) carries it as the Status's
/// `details.retryAfterSeconds` (kube's own retries, now off, read it as
/// `Retry-After`). Zero where it asked nothing.
fn asked_to_wait(e: &watcher::Error) -> Duration {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return Duration::ZERO,
    };
    let seconds = status.details.as_ref().map_or(0, |d| d.retry_after_seconds);
    Duration::from_secs(u64::from(seconds)).min(ASKED_WAIT_MOST)
}

/// What the watchers share: the objects, and where the mapping goes.
struct Shared {
    current: Arc<ArcSwap<Inventory>>,
    generation: Arc<AtomicU64>,
    stats: Arc<WatchStats>,
    store: Mutex<Store>,
    max_objects: usize,
    gone_pods_kept: Duration,
    dirty: AtomicBool,
    /// Which kinds have been listed once.
    listed: [AtomicBool; 4],
    /// Which kinds have left objects out at the bound since their last
    /// list (`WatchStats::left_out` is any of them).
    left_out: [AtomicBool; 4],
    /// When each kind's watch was last opened: the end of a run of
    /// failures, where the watch stays quiet.
    opened: Arc<WatchesOpened>,
    /// How long after a failure the next would have come, were the watch
    /// still failing: the longest wait between tries, and a request's
    /// timeout. A failing run with no failure for this long is taken for
    /// over (a watch opened again ends it sooner: `opened`).
    failure_heard_within: Duration,
}

/// The objects held, by (namespace, name), one map per kind.
#[derive(Default)]
struct Store {
    pods: Kind<Pod>,
    services: Kind<Service>,
    slices: Kind<EndpointSlice>,
    nodes: Kind<Node>,
}

impl Store {
    /// Objects held against the bound: a kind being listed counts what its
    /// listing holds so far, which will replace the objects in force (so a
    /// first list, or a relist, is bounded like everything else; while it
    /// runs, the objects it replaces are held beside it).
    fn len(&self) -> usize {
        self.pods.held() + self.services.held() + self.slices.held() + self.nodes.held()
    }

    /// Whether no kind is being listed.
    fn listing_none(&self) -> bool {
        self.pods.listing.is_none()
            && self.services.listing.is_none()
            && self.slices.listing.is_none()
            && self.nodes.listing.is_none()
    }

    /// Ends each kind's run of failures whose watch was opened since its
    /// latest failure, and has stayed open a while.
    fn end_runs_of_watches_opened(&mut self, opened: &WatchesOpened) {
        let runs = [
            &mut self.pods.failing,
            &mut self.services.failing,
            &mut self.slices.failing,
            &mut self.nodes.failing,
        ];
        let now = tokio::time::Instant::now();
        for (kind, failing) in runs.into_iter().enumerate() {
            let Some(f) = *failing else { continue };
            // Open since the latest failure, and for a while: a watch cut
            // right after its answer fails again within it, which moves
            // the run's latest failure past the opening.
            if opened.at(kind).is_some_and(|at| {
                at > f.latest && now.saturating_duration_since(at) >= OPEN_SETTLES
            }) {
                *failing = None;
            }
        }
    }

    /// Whether some kind's watch has been failing for [`STALE_AFTER`], and
    /// still was `within` ago.
    fn stale(&self, within: Duration) -> bool {
        let now = tokio::time::Instant::now();
        [
            self.pods.failing,
            self.services.failing,
            self.slices.failing,
            self.nodes.failing,
        ]
        .into_iter()
        .flatten()
        .any(|f| f.stale(now, within))
    }
}

/// A run of failures of one kind's watch that no list or event has ended
/// yet: when it began, and its latest failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Failing {
    since: tokio::time::Instant,
    latest: tokio::time::Instant,
}

impl Failing {
    /// The run a failure at `now` is part of: the one before, if its
    /// latest failure came within `heard_within` (the time the next try
    /// takes: a request held until its timeout, 300 s, is one try), else a
    /// new one.
    fn after(
        before: Option<Failing>,
        now: tokio::time::Instant,
        heard_within: Duration,
    ) -> Failing {
        let since = before
            .filter(|b| now.saturating_duration_since(b.latest) <= heard_within)
            .map_or(now, |b| b.since);
        Failing { since, latest: now }
    }

    /// Failing for [`STALE_AFTER`] at `now`, and still heard of `within`.
    fn stale(self, now: tokio::time::Instant, within: Duration) -> bool {
        now.saturating_duration_since(self.since) >= STALE_AFTER
            && now.saturating_duration_since(self.latest) < within
    }
}

/// Whether a watch event is one that got through: a whole list, or an
/// event. Not a list's page (a list that failed on a later page was tried
/// again every 0.8 s, and its watch never said stale), nor a list begun.
fn gets_through<T>(event: &watcher::Event<T>) -> bool {
    matches!(
        event,
        watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)
    )
}

type Key = (Option<String>, String);

/// One kind's objects: those in force, and during a (re)list the ones it
/// has brought so far, which replace them when it is done (so that an
/// object deleted while the watch was away goes too).
struct Kind<T> {
    live: HashMap<Key, T>,
    listing: Option<HashMap<Key, T>>,
    /// Objects deleted (or gone from a relist), with when, kept
    /// [`WatchConfig::gone_pods_kept`] ([`Object::keeps_gone`]: pods only), a quarter of
    /// `max_objects` at most (the oldest give way), apart from the bound
    /// on the objects in force, which they take no room from.
    gone: HashMap<Key, (T, tokio::time::Instant)>,
    /// The gone objects in the order they went (an entry whose object came
    /// back, or went again since, is passed over).
    gone_order: std::collections::VecDeque<(Key, tokio::time::Instant)>,
    /// A run of failures no list or event has ended yet.
    failing: Option<Failing>,
}

impl<T: Object> Kind<T> {
    fn held(&self) -> usize {
        self.listing.as_ref().map_or(self.live.len(), HashMap::len)
    }

    /// `object`, no longer in force, kept as gone if its kind keeps them,
    /// `max` at most.
    fn retire(&mut self, key: Key, mut object: T, max: usize) {
        if !T::keeps_gone() || max == 0 {
            return;
        }
        while self.gone.len() >= max && self.forget_oldest_gone() {}
        object.mark_gone();
        let now = tokio::time::Instant::now();
        self.gone.insert(key.clone(), (object, now));
        self.gone_order.push_back((key, now));
    }

    /// Whether `key`, gone `at`, is still gone since then (not back, nor
    /// gone again later): an entry of the order that stands.
    fn still_gone(&self, key: &Key, at: tokio::time::Instant) -> bool {
        self.gone.get(key).is_some_and(|(_, went)| *went == at)
    }

    /// Forgets the gone object that went first; whether there was one.
    fn forget_oldest_gone(&mut self) -> bool {
        while let Some((key, at)) = self.gone_order.pop_front() {
            if self.still_gone(&key, at) {
                self.gone.remove(&key);
                return true;
            }
        }
        false
    }

    /// Forgets gone objects kept `kept`; whether any went.
    fn forget_gone(&mut self, kept: Duration) -> bool {
        let mut forgot = false;
        while let Some(&(ref key, at)) = self.gone_order.front() {
            if at.elapsed() < kept {
                break;
            }
            if self.still_gone(key, at) {
                let key = key.clone();
                self.gone.remove(&key);
                forgot = true;
            }
            self.gone_order.pop_front();
        }
        // Entries of objects that came back: dropped from the order too.
        if self.gone_order.len() > 2 * self.gone.len() + 64 {
            let order = std::mem::take(&mut self.gone_order);
            self.gone_order = order
                .into_iter()
                .filter(|(key, at)| self.still_gone(key, *at))
                .collect();
        }
        forgot
    }
}

impl<T> Default for Kind<T> {
    fn default() -> Self {
        Kind {
            live: HashMap::new(),
            listing: None,
            gone: HashMap::new(),
            gone_order: std::collections::VecDeque::new(),
            failing: None,
        }
    }
}

/// A trimmed object, and the metadata kube's watcher reads from it.
#[derive(Clone, Debug)]
struct Watched<T> {
    meta: ApiMeta,
    object: T,
}

/// The trimmed objects' own metadata.
trait Object {
    fn metadata(&self) -> &ObjectMeta;

    /// Whether objects of this kind are kept a while once gone
    /// ([`WatchConfig::gone_pods_kept`]): pods, whose flows outlive them.
    fn keeps_gone() -> bool {
        false
    }

    /// Marks the object as gone (see [`Object::keeps_gone`]).
    fn mark_gone(&mut self) {}
}

macro_rules! object {
    ($($t:ty),*) => {$(
        impl Object for $t {
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
        }
    )*};
}
object!(Service, EndpointSlice, Node);

impl Object for Pod {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn keeps_gone() -> bool {
        true
    }

    fn mark_gone(&mut self) {
        self.gone = true;
    }
}

impl<'de, T: Deserialize<'de> + Object> Deserialize<'de> for Watched<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = T::deserialize(d)?;
        let m = object.metadata();
        let meta = ApiMeta {
            name: Some(m.name.clone()),
            namespace: m.namespace.clone(),
            resource_version: m.resource_version.clone(),
            ..ApiMeta::default()
        };
        Ok(Watched { meta, object })
    }
}

macro_rules! resource {
    ($t:ty, $kind:literal, $group:literal, $version:literal, $plural:literal, $scope:ty) => {
        impl Resource for Watched<$t> {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }

            fn group(_: &()) -> Cow<'_, str> {
                $group.into()
            }

            fn version(_: &()) -> Cow<'_, str> {
                $version.into()
            }

            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }

            fn meta(&self) -> &ApiMeta {
                &self.meta
            }

            fn meta_mut(&mut self) -> &mut ApiMeta {
                &mut self.meta
            }
        }
    };
}
resource!(Pod, "Pod", "", "v1", "pods", NamespaceResourceScope);
resource!(
    Service,
    "Service",
    "",
    "v1",
    "services",
    NamespaceResourceScope
);
resource!(
    EndpointSlice,
    "EndpointSlice",
    "discovery.k8s.io",
    "v1",
    "endpointslices",
    NamespaceResourceScope
);
resource!(Node, "Node", "", "v1", "nodes", ClusterResourceScope);

async fn follow_all(client: Client, shared: Arc<Shared>, request_timeout: Duration) {
    // A watch the server ends itself (290 s by default) before the request
    // timeout could cut it while it is quiet: a shorter request timeout
    // shortens the watches too.
    let watch_s = (request_timeout.as_secs_f64() * 0.9).clamp(1.0, WATCH_TIMEOUT_S as f64) as u32;
    let all = || watcher::Config::default().timeout(watch_s);
    let running_pods = all().fields(RUNNING_PODS);
    tokio::join!(
        follow::<Pod>(Api::all(client.clone()), running_pods, &shared, 0, |s| {
            &mut s.pods
        }),
        follow::<Service>(Api::all(client.clone()), all(), &shared, 1, |s| &mut s
            .services),
        follow::<EndpointSlice>(Api::all(client.clone()), all(), &shared, 2, |s| &mut s
            .slices),
        follow::<Node>(Api::all(client), all(), &shared, 3, |s| &mut s.nodes),
        rebuild(&shared),
    );
}

/// Follows one kind into its map, forever (each error is counted, and
/// retried after [`retry_after`]).
async fn follow<T>(
    api: Api<Watched<T>>,
    config: watcher::Config,
    shared: &Shared,
    kind: usize,
    map: fn(&mut Store) -> &mut Kind<T>,
) where
    T: Clone
        + std::fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static
        + Object
        + for<'de> Deserialize<'de>,
    Watched<T>: Resource<DynamicType = ()>,
{
    // Not kube's `default_backoff`: it starts again from its first wait on
    // any event, and the watcher sends one (`Init`) before every list it
    // tries, so a list that kept failing was tried again every second.
    let relist = || watcher(api.clone(), config.clone()).boxed();
    let mut events = relist();
    let mut listed = false;
    // Objects left out for want of room when the current list began.
    let mut dropped_at_list = 0;
    let gone_max = shared.max_objects / 4;
    let mut failures = 0u32;
    // When this kind last left an object out for want of room (none since
    // its last list), and when it was last listed again for that.
    let mut left_out = false;
    let mut relisted_for_room: Option<tokio::time::Instant> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                let now = tokio::time::Instant::now();
                {
                    let mut store = shared.store.lock().expect("k8s store lock");
                    let k = map(&mut store);
                    // A quiet kind's blips days apart must not add up, nor
                    // those of a run its watch, opened again, ended.
                    if k.failing
                        .is_none_or(|f| now.saturating_duration_since(f.latest) > FAILURES_APART)
                    {
                        failures = 0;
                    }
                    k.failing = Some(Failing::after(k.failing, now, shared.failure_heard_within));
                }
                failures = failures.saturating_add(1);
                let wait = retry_after(failures).max(asked_to_wait(&e));
                tracing::warn!(kind = KINDS[kind], error = %e, retry_in_s = wait.as_secs_f64(), "Kubernetes watch");
                tokio::time::sleep(wait).await;
                // A resource version too old, said as the watch request's
                // status (a proxy's or an aggregated server's way; the API
                // server says it in the stream, which kube's watcher takes
                // for a relist): kube would ask again at the same version,
                // forever.
                if matches!(&e, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 410)
                {
                    events = relist();
                }
                continue;
            }
        };
        let mut store = shared.store.lock().expect("k8s store lock");
        let room = shared.max_objects.saturating_sub(store.len());
        // Objects left out are named again once there is room: the watch
        // sends them only when they change, so the kind is listed again
        // (once room for a tenth of the bound is free, at most every
        // RELIST_FOR_ROOM_EVERY: a list is heavy at a cluster's scale).
        // Not while a list runs (its kind's objects in force do not count
        // against the bound then: the room would be seen wrongly).
        if left_out
            && store.listing_none()
            && room >= (shared.max_objects / 10).max(1)
            && relisted_for_room.is_none_or(|t| t.elapsed() >= RELIST_FOR_ROOM_EVERY)
        {
            drop(store);
            left_out = false;
            relisted_for_room = Some(tokio::time::Instant::now());
            tracing::info!(
                kind = KINDS[kind],
                "Kubernetes objects left out for want of room: listed again"
            );
            events = relist();
            continue;
        }
        let dropped_before = shared.stats.dropped.load(Ordering::Relaxed);
        let k = map(&mut store);
        if gets_through(&event) {
            failures = 0;
            k.failing = None;
        }
        match event {
            watcher::Event::Init => {
                k.listing = Some(HashMap::new());
                // A list brings every object there is room for.
                left_out = false;
                dropped_at_list = shared.stats.dropped.load(Ordering::Relaxed);
            }
            watcher::Event::InitApply(o) => {
                let target = k.listing.as_mut().unwrap_or(&mut k.live);
                insert(target, o.object, room, &shared.stats);
            }
            watcher::Event::InitDone => {
                // A list that came through whole (one that failed is tried
                // again from `Init`, and counts once it comes through).
                shared.stats.relists.fetch_add(1, Ordering::Relaxed);
                if let Some(listed_now) = k.listing.take() {
                    // Those deleted while the watch was away are gone (not
                    // those a full store left out of the listing).
                    let before = std::mem::replace(&mut k.live, listed_now);
                    let whole = shared.stats.dropped.load(Ordering::Relaxed) == dropped_at_list;
                    for (key, object) in before {
                        if whole && !k.live.contains_key(&key) {
                            k.retire(key, object, gone_max);
                        }
                    }
                    let live = &k.live;
                    k.gone.retain(|key, _| !live.contains_key(key));
                }
                if !listed {
                    listed = true;
                    tracing::info!(
                        kind = KINDS[kind],
                        objects = k.live.len(),
                        "Kubernetes objects listed"
                    );
                }
                shared.dirty.store(true, Ordering::Release);
            }
            watcher::Event::Apply(o) => {
                // Back under its name (a StatefulSet's pod made again).
                if k.gone.remove(&key(o.object.metadata())).is_some() {
                    shared.dirty.store(true, Ordering::Release);
                }
                // Most updates change fields flowtap drops (a pod's
                // conditions, a node's heartbeat): only a change to what is
                // kept rebuilds the mapping.
                if insert(&mut k.live, o.object, room, &shared.stats) {
                    shared.dirty.store(true, Ordering::Release);
                }
            }
            watcher::Event::Delete(o) => {
                let key = key(o.object.metadata());
                if k.live.remove(&key).is_some() {
                    k.retire(key, o.object, gone_max);
                }
                shared.dirty.store(true, Ordering::Release);
            }
        }
        if shared.stats.dropped.load(Ordering::Relaxed) != dropped_before {
            left_out = true;
        }
        // Names are incomplete while a kind leaves objects out: the
        // mapping is rebuilt to say so (and again once it is listed whole).
        if shared.left_out[kind].swap(left_out, Ordering::AcqRel) != left_out {
            let any = shared.left_out.iter().any(|l| l.load(Ordering::Acquire));
            shared.stats.left_out.store(any, Ordering::Release);
            shared.dirty.store(true, Ordering::Release);
        }
        let held = k.live.len();
        shared.stats.objects[kind].store(held as u64, Ordering::Relaxed);
        if listed {
            // Names are complete once every kind was listed (marked while
            // the store is held, so the rebuild that takes this change in
            // sees it).
            shared.listed[kind].store(true, Ordering::Release);
            if shared.listed.iter().all(|l| l.load(Ordering::Acquire)) {
                shared.stats.synced.store(true, Ordering::Release);
            }
        }
        drop(store);
    }
}

fn key(m: &ObjectMeta) -> Key {
    (m.namespace.clone(), m.name.clone())
}

/// Keeps `object` (within `room`); whether that changed what is held.
fn insert<T: Object + PartialEq>(
    map: &mut HashMap<Key, T>,
    object: T,
    room: usize,
    stats: &WatchStats,
) -> bool {
    let k = key(object.metadata());
    match map.get_mut(&k) {
        Some(held) if *held == object => false,
        Some(held) => {
            *held = object;
            true
        }
        None if room == 0 => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
        None => {
            map.insert(k, object);
            true
        }
    }
}

/// Rebuilds the address mapping when something changed, at most every
/// [`REBUILD_EVERY`].
async fn rebuild(shared: &Shared) {
    let mut tick = tokio::time::interval(REBUILD_EVERY);
    loop {
        tick.tick().await;
        {
            let mut store = shared.store.lock().expect("k8s store lock");
            if store.pods.forget_gone(shared.gone_pods_kept) {
                shared.dirty.store(true, Ordering::Release);
            }
            // The gauges are set here only, every tick (half a second).
            shared
                .stats
                .gone_pods
                .store(store.pods.gone.len() as u64, Ordering::Relaxed);
            store.end_runs_of_watches_opened(&shared.opened);
            let stale = store.stale(shared.failure_heard_within);
            if shared.stats.stale.swap(stale, Ordering::AcqRel) != stale {
                tracing::warn!(
                    stale,
                    "Kubernetes names {}",
                    if stale {
                        "may be stale: a watch has been failing for a minute"
                    } else {
                        "are current again"
                    }
                );
                shared.dirty.store(true, Ordering::Release);
            }
        }
        if !shared.dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        let inventory = {
            let store = shared.store.lock().expect("k8s store lock");
            let mut inventory = Inventory::from_objects(
                store
                    .pods
                    .live
                    .values()
                    .chain(store.pods.gone.values().map(|(pod, _)| pod)),
                store.services.live.values(),
                store.slices.live.values(),
                store.nodes.live.values(),
            );
            inventory.complete = shared.stats.synced.load(Ordering::Acquire)
                && !shared.stats.stale.load(Ordering::Acquire)
                && !shared.stats.left_out.load(Ordering::Acquire);
            inventory
        };
        shared.current.store(Arc::new(inventory));
        shared.generation.fetch_add(1, Ordering::AcqRel);
        shared.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watches' answers are noted by their paths' plurals, in the
    /// order of [`KINDS`].
    #[test]
    fn the_plurals_noted_are_the_resources_plurals() {
        use crate::opened::PLURALS;
        assert_eq!(Watched::<Pod>::plural(&()), PLURALS[0]);
        assert_eq!(Watched::<Service>::plural(&()), PLURALS[1]);
        assert_eq!(Watched::<EndpointSlice>::plural(&()), PLURALS[2]);
        assert_eq!(Watched::<Node>::plural(&()), PLURALS[3]);
    }

    /// A 429 of the API server's priority and fairness, as it sends it.
    #[test]
    fn the_wait_the_server_asks_for_is_kept() {
        let status = |body: &str| -> Box<kube::core::Status> {
            Box::new(serde_json::from_str(body).unwrap())
        };
        let too_many = status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Too many requests, please try again later.",
                "reason":"TooManyRequests","details":{"retryAfterSeconds":7},"code":429}"#,
        );
        let e = watcher::Error::WatchStartFailed(kube::Error::Api(too_many.clone()));
        assert_eq!(asked_to_wait(&e), Duration::from_secs(7));
        let e = watcher::Error::InitialListFailed(kube::Error::Api(too_many));
        assert_eq!(
            retry_after(1).max(asked_to_wait(&e)),
            Duration::from_secs(7)
        );
        let unbounded =
            status(r#"{"status":"Failure","code":429,"details":{"retryAfterSeconds":999999}}"#);
        let e = watcher::Error::WatchError(unbounded);
        assert_eq!(asked_to_wait(&e), ASKED_WAIT_MOST);
        let unavailable = status(r#"{"status":"Failure","code":503,"message":"down"}"#);
        let e = watcher::Error::WatchFailed(kube::Error::Api(unavailable));
        assert_eq!(asked_to_wait(&e), Duration::ZERO);
    }

    #[test]
    fn a_watch_failing_is_stale_after_a_minute_however_slow_its_tries() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs;
        // A list a proxy holds until the request timeout (300 s) fails
        // every 300 s or so: one run, stale after the first minute.
        let heard_within = RETRY_LAST * 5 / 4 + s(300) + RETRY_FIRST;
        let first = Failing::after(None, t0, heard_within);
        assert!(!first.stale(t0 + s(59), heard_within));
        assert!(first.stale(t0 + s(61), heard_within));
        let second = Failing::after(Some(first), t0 + s(330), heard_within);
        assert_eq!(second.since, t0);
        assert!(second.stale(t0 + s(331), heard_within));
        // No failure heard for longer than a try takes: the watch reopened
        // (which says nothing), and a failure after starts a new run.
        assert!(!second.stale(t0 + s(330) + heard_within, heard_within));
        let later = Failing::after(
            Some(second),
            t0 + s(330) + heard_within + s(1),
            heard_within,
        );
        assert_eq!(later.since, later.latest);
    }

    #[test]
    fn only_a_whole_list_or_an_event_gets_through() {
        let p = || pod("a").1;
        assert!(gets_through(&watcher::Event::<Pod>::InitDone));
        assert!(gets_through(&watcher::Event::Apply(p())));
        assert!(gets_through(&watcher::Event::Delete(p())));
        assert!(!gets_through(&watcher::Event::<Pod>::Init));
        assert!(!gets_through(&watcher::Event::InitApply(p())));
    }

    fn pod(name: &str) -> (Key, Pod) {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        ((Some("shop".into()), name.into()), p)
    }

    /// Gone pods are bounded apart from the objects in force (they took
    /// their room before, and a burst of deletions kept new pods out):
    /// at the bound the oldest gives way; one that comes back leaves.
    #[test]
    fn gone_pods_are_bounded_apart_and_the_oldest_give_way() {
        let mut kind = Kind::<Pod>::default();
        for name in ["a", "b", "c"] {
            let (key, p) = pod(name);
            kind.live.insert(key, p);
        }
        assert_eq!(kind.held(), 3);
        for name in ["a", "b", "c"] {
            let (key, p) = pod(name);
            kind.live.remove(&key);
            kind.retire(key, p, 2);
        }
        assert_eq!(kind.held(), 0, "no room taken from the live objects");
        let mut gone: Vec<&str> = kind.gone.keys().map(|k| k.1.as_str()).collect();
        gone.sort();
        assert_eq!(gone, ["b", "c"], "the oldest gave way");
        assert!(kind.gone.values().all(|(p, _)| p.gone && p.retired()));
        // Back under its name: no longer gone, and its place in the order
        // is passed over.
        kind.gone.remove(&pod("b").0);
        assert!(kind.forget_oldest_gone());
        assert!(kind.gone.is_empty());
        assert!(
            !kind.forget_gone(crate::GONE_PODS_KEPT),
            "nothing kept 5 minutes yet"
        );
    }
}
