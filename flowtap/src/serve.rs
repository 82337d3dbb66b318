//! Serving the API: a tokio runtime of its own (never the capture cores),
//! the HTTP server, and the publisher that turns snapshots into views.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};

use api::Publisher;
use api::server::{AppState, QueueStatsFn, ServerConfig, serve};
use tokio::sync::watch;

/// Threads answering HTTP requests.
const HTTP_THREADS: usize = 2;

pub(crate) struct Service {
    runtime: tokio::runtime::Runtime,
    publisher: Arc<Mutex<Publisher>>,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    ready: Arc<AtomicBool>,
}

impl Service {
    /// Binds `listen` and starts answering from `publisher`'s views. The
    /// runtime's threads stay off `capture_cores` when other cores exist.
    pub(crate) fn start(
        listen: SocketAddr,
        publisher: Arc<Mutex<Publisher>>,
        config: ServerConfig,
        capture_cores: &[usize],
        queues: Option<QueueStatsFn>,
    ) -> anyhow::Result<Service> {
        let spare: Vec<core_affinity::CoreId> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !capture_cores.contains(&c.id))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(HTTP_THREADS)
            .max_blocking_threads(HTTP_THREADS * 2)
            .thread_name("flowtap-http")
            .on_thread_start(move || {
                if !spare.is_empty() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    core_affinity::set_for_current(spare[i % spare.len()]);
                }
            })
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut config = config;
        // On loopback, only loopback Host names: a page that rebinds its own
        // name to 127.0.0.1 cannot reach flowtap through it.
        config.access.loopback_host_only = addr.ip().is_loopback();
        if !addr.ip().is_loopback() && config.access.token.is_none() {
            tracing::warn!(%addr, "serving flow data on a non-loopback address without --auth-token-file");
        }
        let (views, stats) = {
            let p = publisher.lock().expect("publisher lock");
            (p.views(), p.stats())
        };
        let mut state = AppState::new(views, stats);
        state.queues = queues;
        state.commit = crate::cli::COMMIT;
        let ready = state.ready.clone();
        let state = Arc::new(state);
        let (stop, mut stopped) = watch::channel(false);
        let server = runtime.spawn(serve(listener, state, config, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        eprintln!("flowtap: serving on http://{addr}");
        Ok(Service {
            runtime,
            publisher,
            stop,
            server: Some(server),
            ready,
        })
    }

    /// Marks the service ready for /readyz.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Blocks until SIGINT or SIGTERM, re-reading the inventory meanwhile.
    pub(crate) fn run_until_signal(&self) -> anyhow::Result<()> {
        let publisher = self.publisher.clone();
        self.runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term =
                signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
            let mut int =
                signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = tick.tick() => {
                        let publisher = publisher.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            publisher.lock().expect("publisher lock").refresh();
                        })
                        .await;
                    }
                }
            }
            eprintln!("flowtap: shutting down");
            Ok(())
        })
    }

    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server);
        }
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}
