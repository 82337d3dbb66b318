//! `flowtap -r FILE...`: read capture files through the pipeline, then answer
//! `--dump` queries from the final snapshot.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use http_api::View;
use pipeline::capture::{FileOutcome, FileSource};
use pipeline::counters::FrameKind;
use pipeline::flow::{TableConfig, Timeouts, Window};
use pipeline::wire::dissect::MalformedReason;
use pipeline::{Pipeline, PipelineConfig, Snapshot};

use crate::cli::Cli;

const SECOND_NS: u64 = 1_000_000_000;

/// Runs the offline job; returns the process exit status.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let started = Instant::now();
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
    let config = PipelineConfig {
        workers,
        hash_seed: cli.hash_seed,
        table: TableConfig {
            timeouts,
            rtt_window: cli.rtt_window.map_or(Window::Unbounded, Window::Seconds),
            rate_window_ns: cli.rate_window.max(1) * SECOND_NS,
            ..TableConfig::default()
        },
        ..PipelineConfig::default()
    };
    let (source, report) = FileSource::new(cli.read.clone());
    let pipeline = Pipeline::start(config, vec![source]);
    let snapshot = Arc::new(pipeline.finish());
    let outcomes = std::mem::take(&mut *report.lock().expect("reader thread finished"));
    let view = View::build(snapshot.clone());

    let targets = if cli.dump.is_empty() {
        vec![http_api::api::SUMMARY_PATH.to_owned()]
    } else {
        cli.dump.clone()
    };
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
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

    report_run(&snapshot, &outcomes, started.elapsed().as_secs_f64());
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
