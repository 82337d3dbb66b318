//! `flowtap -r FILE...`: read capture files through the pipeline, then answer
//! `--dump` queries from the final snapshot and, with `--listen`, serve it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_api::Publisher;
use http_api::cluster::Cluster;
use http_api::k8s::InventoryFile;
use pipeline::capture::{FileOutcome, FileSource};
use pipeline::counters::FrameKind;
use pipeline::flow::{TableConfig, Timeouts, Window};
use pipeline::wire::dissect::MalformedReason;
use pipeline::{Clock, Merger, Pipeline, PipelineConfig, Snapshot};

use crate::cli::Cli;
use crate::serve::Service;

const SECOND_NS: u64 = 1_000_000_000;

/// How often a snapshot is published while files are read and served.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

fn pipeline_config(cli: &Cli) -> PipelineConfig {
    let workers = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut timeouts = Timeouts::NEVER;
    if let Some(s) = cli.tcp_timeout {
        timeouts.tcp_idle_ns = s * SECOND_NS;
        timeouts.tcp_closed_ns = timeouts.tcp_closed_ns.min(s * SECOND_NS);
        timeouts.tcp_handshake_ns = timeouts.tcp_handshake_ns.min(s * SECOND_NS);
    }
    if let Some(s) = cli.udp_timeout {
        timeouts.udp_idle_ns = s * SECOND_NS;
    }
    PipelineConfig {
        workers,
        hash_seed: cli.hash_seed,
        table: TableConfig {
            timeouts,
            rtt_window: cli.rtt_window.map_or(Window::Unbounded, Window::Seconds),
            rate_window_ns: cli.rate_window.max(1) * SECOND_NS,
            ..TableConfig::default()
        },
        ..PipelineConfig::default()
    }
}

/// Runs the offline job; returns the process exit status.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let started = Instant::now();
    let inventory = match &cli.k8s_inventory {
        Some(path) => Some(InventoryFile::open(path).context("loading the Kubernetes inventory")?),
        None => None,
    };
    let cluster = Cluster {
        cidrs: cli.cluster_cidr.clone(),
    };
    let publisher = Arc::new(Mutex::new(Publisher::new(inventory, cluster)));
    // Bind before reading, so a taken port fails at once.
    let service = match cli.listen {
        Some(addr) => Some(Service::start(
            addr,
            publisher.clone(),
            cli.server_config(),
        )?),
        None => None,
    };

    let (source, report) = FileSource::new(cli.read.clone());
    let pipeline = Arc::new(Pipeline::start(pipeline_config(cli), vec![source]));
    // While serving, publish progress as the files are read.
    let merger = service.as_ref().map(|_| {
        let publisher = publisher.clone();
        Merger::spawn(
            pipeline.clone(),
            PUBLISH_INTERVAL,
            Clock::Capture,
            move |snapshot| {
                publisher.lock().expect("publisher lock").publish(snapshot);
            },
        )
    });
    let snapshot = pipeline.finish();
    if let Some(m) = merger {
        m.stop();
    }
    let outcomes = std::mem::take(&mut *report.lock().expect("reader thread finished"));
    let seconds = started.elapsed().as_secs_f64();
    let snapshot = Arc::new(snapshot);
    publisher
        .lock()
        .expect("publisher lock")
        .publish_shared(snapshot.clone());
    // Printed once the final snapshot is served.
    report_run(&snapshot, &outcomes, seconds);

    let mut targets = cli.dump.clone();
    if targets.is_empty() && service.is_none() {
        targets.push(http_api::api::SUMMARY_PATH.to_owned());
    }
    let mut failed = false;
    if !targets.is_empty() {
        let view = publisher
            .lock()
            .expect("publisher lock")
            .views()
            .load_full();
        let mut stdout = std::io::stdout().lock();
        for target in &targets {
            let (path, query) = http_api::api::split_target(target);
            let response = http_api::respond(&view, path, query);
            if response.status != 200 {
                failed = true;
                eprintln!("flowtap: --dump {target}: HTTP {}", response.status);
            }
            stdout
                .write_all(&response.body)
                .context("writing to stdout")?;
            stdout.write_all(b"\n").context("writing to stdout")?;
        }
        stdout.flush().context("writing to stdout")?;
    }

    if let Some(service) = service {
        service.run_until_signal()?;
        service.stop();
    }
    let file_errors = outcomes.iter().any(|o| o.error.is_some());
    Ok(if file_errors || failed { 2 } else { 0 })
}

/// The end-of-run report on stderr: what was read, what was not flow
/// traffic, what was malformed, and every file error.
fn report_run(snapshot: &Snapshot, outcomes: &[FileOutcome], seconds: f64) {
    let c = &snapshot.counters;
    let kinds: Vec<String> = FrameKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), c.ingest.kind(*k)))
        .collect();
    let malformed: Vec<String> = MalformedReason::ALL
        .iter()
        .map(|r| format!("{} {}", r.name(), c.ingest.malformed(*r)))
        .collect();
    eprintln!(
        "flowtap: read {} frames ({} bytes) from {} file(s) in {:.3} s",
        c.ingest.frames,
        c.ingest.bytes,
        outcomes.len(),
        seconds
    );
    eprintln!("flowtap: frames by kind: {}", kinds.join(", "));
    eprintln!(
        "flowtap: malformed frames: {} ({})",
        c.ingest.malformed_total(),
        malformed.join(", ")
    );
    eprintln!(
        "flowtap: flows {}, connections {}, unmatched fragments {}, out-of-order handshakes {}",
        snapshot.flows.len(),
        snapshot.flows.iter().map(|f| f.connections).sum::<u64>(),
        c.table.fragments_unmatched,
        c.table.handshakes_out_of_order
    );
    for outcome in outcomes {
        if let Some(e) = &outcome.error {
            eprintln!("flowtap: error: {e}");
        }
    }
}
