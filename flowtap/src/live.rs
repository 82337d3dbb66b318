//! `flowtap -i IFACE`: capture live with XDP/AF_XDP, serve the flows while
//! capturing, and on SIGINT/SIGTERM detach and remove everything.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use pipeline::merger::now_ns;
use pipeline::{AsOf, Backpressure, Clock, Merger, Pipeline, PipelineConfig};
use xdp::{LiveCapture, LiveConfig, Mode, UnboundAction, XdpModeChoice};

use crate::cli::{DEFAULT_LISTEN, ModeArg, RunArgs, UnboundArg, XdpModeArg};
use crate::serve::Service;
use crate::setup;

fn live_config(cli: &RunArgs, iface: &str) -> LiveConfig {
    let mut config = LiveConfig::new(iface);
    config.mode = match cli.mode {
        ModeArg::Span => Mode::Span,
        ModeArg::Host => Mode::Host,
    };
    config.xdp_mode = match cli.xdp_mode {
        XdpModeArg::Auto => XdpModeChoice::Auto,
        XdpModeArg::Driver => XdpModeChoice::Driver,
        XdpModeArg::Skb => XdpModeChoice::Skb,
    };
    config.unbound = match cli.unbound {
        UnboundArg::Pass => UnboundAction::Pass,
        UnboundArg::Drop => UnboundAction::Drop,
    };
    config.queues = cli.queues;
    config.busy_poll = cli.busy_poll;
    if let Some(q) = cli.queues {
        config.host_queues = q;
    }
    config
}

/// The cores workers are pinned to: `--cores`, else every CPU.
fn capture_cores(cli: &RunArgs) -> Vec<usize> {
    if !cli.cores.is_empty() {
        return cli.cores.clone();
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

pub fn run(cli: &RunArgs, iface: &str) -> anyhow::Result<i32> {
    let publisher = setup::publisher(cli)?;
    // Before attaching anything: a bad token file fails at once.
    let server_config = cli.server_config()?;
    let (capture, sources) = LiveCapture::start(&live_config(cli, iface))
        .with_context(|| format!("starting capture on {iface}"))?;
    let info = capture.info.clone();
    let cores = capture_cores(cli);
    // One worker per queue; more if there are more cores, to spread the shards.
    let workers = sources.len().max(cores.len());
    let worker_cores: Vec<Option<usize>> =
        (0..workers).map(|i| Some(cores[i % cores.len()])).collect();
    tracing::info!(
        interface = %info.iface,
        capture_interface = %info.capture_iface,
        mode = ?info.mode,
        xdp_mode = info.xdp_mode,
        zero_copy = info.zero_copy,
        queues = info.queues.len(),
        workers,
        cores = ?worker_cores.iter().flatten().collect::<Vec<_>>(),
        "capturing"
    );
    let xsk_frames = live_config(cli, iface).xsk.frame_count;
    let config = PipelineConfig {
        workers,
        table: setup::table_config(cli, true),
        backpressure: Backpressure::Drop,
        hash_seed: cli.hash_seed,
        cores: worker_cores,
        ..PipelineConfig::default()
    };
    let pipeline = Arc::new(Pipeline::start(config.clone(), sources));
    let listen = cli
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address"));
    let queue_info = info.clone();
    let queue_stats: http_api::server::QueueStatsFn = Arc::new(move || {
        queue_info
            .queues
            .iter()
            .map(|q| {
                let k = q.kernel();
                http_api::metrics::QueueSample {
                    queue: q.queue,
                    frames: q.frames.load(Ordering::Relaxed),
                    bytes: q.bytes.load(Ordering::Relaxed),
                    without_timestamp: q.meta_missing.load(Ordering::Relaxed),
                    rx_dropped: k.rx_dropped,
                    rx_ring_full: k.rx_ring_full,
                    fill_ring_empty: k.rx_fill_ring_empty_descs,
                    invalid: k.rx_invalid_descs + k.tx_invalid_descs,
                    ring_entries: u64::from(xsk_frames),
                }
            })
            .collect()
    });
    let handoff_capacity = config.queue_capacity as u64;
    let service = Service::start(
        listen,
        publisher.clone(),
        server_config,
        &cores,
        Some(queue_stats),
    )?;
    publisher
        .lock()
        .expect("publisher lock")
        .stats()
        .handoff_capacity
        .store(handoff_capacity, Ordering::Relaxed);
    let interval = Duration::from_secs_f64(cli.snapshot_interval.max(0.05));
    let merger = {
        let publisher = publisher.clone();
        Merger::spawn(pipeline.clone(), interval, Clock::Wall, move |snapshot| {
            publisher.lock().expect("publisher lock").publish(snapshot);
        })
    };

    // XDP is attached, the sockets are bound, the workers run.
    service.set_ready();
    service.run_until_signal()?;

    merger.stop();
    let snapshot = pipeline.snapshot(AsOf::Time(now_ns()));
    setup::report_counters(&snapshot);
    setup::report_memory(cli);
    publisher.lock().expect("publisher lock").publish(snapshot);
    let failed = setup::dump(&publisher, &cli.dump)?;
    service.stop();
    // Stop the workers (closing the sockets), then detach and remove.
    drop(pipeline);
    for q in &info.queues {
        let k = q.kernel();
        eprintln!(
            "flowtap: queue {}: frames {} bytes {} without XDP timestamp {}; kernel: rx_dropped {} rx_ring_full {} fill_ring_empty {} invalid {}",
            q.queue,
            q.frames.load(Ordering::Relaxed),
            q.bytes.load(Ordering::Relaxed),
            q.meta_missing.load(Ordering::Relaxed),
            k.rx_dropped,
            k.rx_ring_full,
            k.rx_fill_ring_empty_descs,
            k.rx_invalid_descs,
        );
    }
    capture.stop();
    eprintln!("flowtap: detached from {iface}");
    Ok(if failed { 2 } else { 0 })
}
