//! Serving the API: the data listener on a tokio runtime of its own (never
//! the capture cores), the admin listener (`/healthz`, `/readyz`,
//! `/metrics`) on another, so that nothing a client does on the data port
//! can keep a probe or a scrape waiting, and the publisher that turns
//! snapshots into views.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use api::Publisher;
use api::server::{
    AppState, Listener, QueueStatsFn, Readiness, ReadinessCell, ServerConfig, serve,
};
use tokio::sync::watch;

/// Threads answering HTTP requests.
const HTTP_THREADS: usize = 2;

pub(crate) struct Service {
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    admin: Option<std::thread::JoinHandle<()>>,
    inventory: Option<std::thread::JoinHandle<()>>,
    readiness: Arc<ReadinessCell>,
    /// Caught by `catch_stop_signals`, waited for by `run_until_signal`.
    stop_signals: Mutex<Option<StopSignals>>,
}

/// The signals that stop a service: SIGTERM, SIGINT, and SIGHUP (a closed
/// terminal or ssh session: stopped as cleanly as by SIGTERM, with the final
/// report, the last IPFIX records and host mode's veth removed, where it
/// killed the process) unless started to ignore it (`nohup`), which a
/// handler would undo.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers (in a runtime's context); a signal that comes
    /// from now on is kept for `recv`.
    fn catch() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: match ignored(signal_hook::consts::SIGHUP) {
                true => None,
                false => {
                    Some(signal(SignalKind::hangup()).context("installing the SIGHUP handler")?)
                }
            },
        })
    }

    async fn recv(&mut self) {
        let hung_up = async {
            match &mut self.hup {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = hung_up => {}
        }
    }
}

/// The stop signals caught while capture files are read, before a
/// service waits for them: SIGTERM, SIGINT and SIGHUP, each unless flowtap
/// was started to ignore it (`nohup`, a script's background job), which a
/// handler would undo. Reading stops where it is, and what was read is
/// answered and exported (a signal then had ended the process at once and
/// lost it all). A second one ends the process at once, by the signal's
/// default action: for a read waiting on a pipe that brings nothing.
/// Once reading is done, a signal ends the process at once again
/// ([`StopWhileReading::end_at_once`]) or the service's handlers take over
/// ([`StopWhileReading::hand_over`]).
pub(crate) struct StopWhileReading {
    stopped: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    actions: Vec<signal_hook::SigId>,
}

/// The stop signal that came: its name, and the exit status a shell gives
/// a process it ended (128 and its number).
pub(crate) type Stopped = (&'static str, i32);

impl StopWhileReading {
    pub(crate) fn catch() -> anyhow::Result<StopWhileReading> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut caught = StopWhileReading {
            stopped: Arc::default(),
            signal: Arc::default(),
            actions: Vec::new(),
        };
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            if ignored(signal) {
                continue;
            }
            let number = usize::try_from(signal).expect("signal numbers are positive");
            // In this order: the signal's number is kept before the flag
            // says it came, and the default action is taken only for a
            // signal that comes once the flag is set.
            let registered = [
                signal_hook::flag::register_usize(signal, caught.signal.clone(), number),
                signal_hook::flag::register_conditional_default(signal, caught.stopped.clone()),
                signal_hook::flag::register(signal, caught.stopped.clone()),
            ];
            for action in registered {
                caught
                    .actions
                    .push(action.context("handling stop signals")?);
            }
        }
        Ok(caught)
    }

    /// Set once a stop signal came.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.stopped.clone()
    }

    /// The stop signal that came, if one did.
    pub(crate) fn signal(&self) -> Option<Stopped> {
        let number = i32::try_from(self.signal.load(Ordering::Relaxed)).ok()?;
        let name = signal_hook::low_level::signal_name(number)?;
        Some((name, 128 + number))
    }

    /// Reading is done and nothing will be served: from now on a stop
    /// signal ends the process at once, as a signal's default action does
    /// (a long `--dump` to a pipe nobody reads is ended by Ctrl-C). Returns
    /// the one that came, if one did.
    pub(crate) fn end_at_once(self) -> Option<Stopped> {
        let came = self.signal();
        self.stopped.store(true, Ordering::Relaxed);
        came
    }

    /// Reading is done and `service` is to serve: its handlers take the
    /// stop signals over (a second one then waits for its clean shutdown,
    /// where this one's would end the process at once). Returns the one
    /// that came before they did, if one did: the service then does not
    /// serve.
    pub(crate) fn hand_over(self, service: &Service) -> anyhow::Result<Option<Stopped>> {
        service.catch_stop_signals()?;
        for action in &self.actions {
            signal_hook::low_level::unregister(*action);
        }
        Ok(self.signal())
    }
}

/// Where the service listens.
pub(crate) struct Listen {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    /// Serve flow data on a non-loopback address without a token.
    pub insecure: bool,
}

impl Service {
    /// Binds `listen` and starts answering from `publisher`'s views. The
    /// runtime's threads stay off `capture_cores` when other cores exist.
    pub(crate) fn start(
        listen: Listen,
        publisher: Arc<Mutex<Publisher>>,
        config: ServerConfig,
        capture_cores: &[usize],
        queues: Option<QueueStatsFn>,
        demand: Option<Arc<api::demand::Demand>>,
    ) -> anyhow::Result<Service> {
        let spare: Vec<core_affinity::CoreId> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !capture_cores.contains(&c.id))
            .collect();
        let next = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(HTTP_THREADS)
            .max_blocking_threads(HTTP_THREADS * 2)
            .thread_name("flowtap-http")
            .on_thread_start(move || {
                pipeline::privileges::give_up_for_this_thread();
                if !spare.is_empty() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    core_affinity::set_for_current(spare[i % spare.len()]);
                }
            })
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let bind = |addr: SocketAddr, option: &str| {
            let listener = match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
                // `[::]` (the shipped manifests', for IPv6 clusters) on a
                // kernel without IPv6 (booted with ipv6.disable=1): every
                // IPv4 address, which `[::]` would have included.
                Err(e)
                    if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                        && e.raw_os_error()
                            == Some(rustix::io::Errno::AFNOSUPPORT.raw_os_error()) =>
                {
                    let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
                    tracing::info!(%addr, %v4, "no IPv6 on this host: listening on IPv4 alone");
                    runtime.block_on(tokio::net::TcpListener::bind(v4))
                }
                bound => bound,
            }
            .with_context(|| format!("{option}: cannot listen on {addr}"))?;
            let bound = listener.local_addr().context("reading the bound address")?;
            anyhow::Ok((listener, bound))
        };
        let (data, data_addr) = bind(listen.data, "--listen")?;
        if !data_addr.ip().is_loopback() && config.access.token.is_none() {
            anyhow::ensure!(
                listen.insecure,
                "refusing to serve flow data on {data_addr} without a bearer token: give \
                 --auth-token-file FILE (anyone who reaches that address could otherwise read \
                 every flow and call the MCP tools), or --insecure-listen to serve it anyway"
            );
            tracing::warn!(%data_addr, "--insecure-listen: serving flow data to anyone who reaches this address, without a token");
        }
        let (admin, admin_addr) = bind(listen.admin, "--admin-listen")?;
        let (views, stats) = {
            let p = publisher.lock().expect("publisher lock");
            (p.views(), p.stats())
        };
        let mut state = AppState::new(views, stats, &config);
        state.queues = queues;
        state.demand = demand;
        state.commit = crate::cli::COMMIT;
        let readiness = state.readiness.clone();
        let state = Arc::new(state);
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let server = runtime.spawn(serve(
            data,
            Listener::Data,
            state.clone(),
            config.clone(),
            until_stopped(stopped.clone()),
        ));
        // The admin listener: its own thread and runtime. The listener is
        // moved to it unregistered (a std socket), to be registered there.
        let admin = admin.into_std().context("moving the admin listener")?;
        let inventory = follow_inventory(publisher.clone(), stopped.clone())
            .context("starting the inventory thread")?;
        let admin_stopped = until_stopped(stopped);
        let admin = std::thread::Builder::new()
            .name("flowtap-admin".into())
            .spawn(move || {
                pipeline::privileges::give_up_for_this_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("starting the admin runtime");
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(admin) {
                        Ok(admin) => {
                            serve(admin, Listener::Admin, state, config, admin_stopped).await
                        }
                        Err(e) => tracing::error!(error = %e, "admin listener"),
                    }
                });
            })
            .context("starting the admin thread")?;
        eprintln!("flowtap: admin on http://{admin_addr}");
        eprintln!("flowtap: serving on http://{data_addr}");
        Ok(Service {
            runtime,
            stop,
            server: Some(server),
            admin: Some(admin),
            inventory: Some(inventory),
            readiness,
            stop_signals: Mutex::new(None),
        })
    }

    /// Marks the service ready for /readyz.
    pub(crate) fn set_ready(&self) {
        self.set_readiness(Readiness::Ready);
    }

    /// Says for /readyz whether the service is ready, or why not (live
    /// capture, while an interface cannot receive).
    pub(crate) fn set_readiness(&self, readiness: Readiness) {
        self.readiness.set(readiness);
    }

    /// From now on SIGTERM, SIGINT and SIGHUP stop the service cleanly,
    /// once `run_until_signal` is reached. Called before the service says
    /// it is ready: a signal sent as soon as `/readyz` answers 200 (as a
    /// supervisor or a test may) came before `run_until_signal`'s handlers
    /// and killed the process without its last words. Until then (files
    /// still being read) a signal stops the reading ([`StopWhileReading`]).
    pub(crate) fn catch_stop_signals(&self) -> anyhow::Result<()> {
        let mut caught = self.stop_signals.lock().expect("signals lock");
        if caught.is_none() {
            let _runtime = self.runtime.enter();
            *caught = Some(StopSignals::catch()?);
        }
        Ok(())
    }

    /// Blocks until SIGINT, SIGTERM or SIGHUP (caught since
    /// `catch_stop_signals`, or from now), or until `failure` (asked every
    /// second) reports that capture failed: then readiness fails and the
    /// error is returned, for the process to exit non-zero.
    pub(crate) fn run_until_signal(
        &self,
        failure: impl Fn() -> Option<String>,
    ) -> anyhow::Result<()> {
        self.catch_stop_signals()?;
        let mut signals = self
            .stop_signals
            .lock()
            .expect("signals lock")
            .take()
            .expect("caught above");
        let result = self.runtime.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = signals.recv() => break,
                    _ = tick.tick() => {
                        if let Some(why) = failure() {
                            anyhow::bail!("capture failed: {why}");
                        }
                    }
                }
            }
            eprintln!("flowtap: shutting down");
            Ok(())
        });
        // Not ready while shutting down: a Service stops sending clients.
        self.readiness.set(match result {
            Ok(()) => Readiness::Stopping,
            Err(_) => Readiness::CaptureFailed,
        });
        result
    }

    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server);
        }
        if let Some(admin) = self.admin.take() {
            let _ = admin.join();
        }
        if let Some(inventory) = self.inventory.take() {
            let _ = inventory.join();
        }
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Re-reads the inventory file every second until `stop`, on a thread of
/// its own (a large inventory takes a while to parse, and must not take a
/// thread any request needs).
fn follow_inventory(
    publisher: Arc<Mutex<Publisher>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("flowtap-inventory".into())
        .spawn(move || {
            pipeline::privileges::give_up_all_but_reading_files();
            while !*stop.borrow_and_update() {
                std::thread::sleep(Duration::from_secs(1));
                publisher.lock().expect("publisher lock").refresh();
            }
        })
}

/// Whether `signal` was ignored when flowtap was started (SIGHUP under
/// `nohup`, SIGINT for a script's background job, a shell's `trap ""`),
/// from the mask of ignored signals in /proc/self/status.
fn ignored(signal: i32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        // Signal n is the mask's bit n - 1.
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Raises this process's limit of open files to its hard limit. Each
/// listener takes up to `--http-max-connections` (512) connections, two
/// listeners 1024, beside the capture's and the watch's descriptors, and
/// systemd and most shells start a service at a soft limit of 1024 (its
/// hard limit much higher: 524288 with systemd): at the soft limit a burst
/// of idle connections would lock out real queries. The hard limit is the
/// administrator's bound, left as it is. Called first thing, before a
/// capture opens its sockets.
pub(crate) fn open_files_up_to_the_hard_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?limit.maximum, "open files limit raised")
            }
            Err(e) => tracing::debug!(error = %e, "open files limit left as it is"),
        }
    }
}
