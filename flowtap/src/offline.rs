//! `flowtap -r FILE...`: read capture files through the pipeline, then answer
//! `--dump` queries from the final snapshot and, with `--listen`, serve it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::capture::CaptureError;
use pipeline::source::{FileOutcome, FileSource};
use pipeline::{Clock, Merger, Pipeline, PipelineConfig, Snapshot};

use anyhow::Context;
use api::server::Readiness;

use crate::cli::RunArgs;
use crate::serve::{Service, StopWhileReading};
use crate::{fault, setup};

/// Flows in the table printed after reading files.
const TABLE_ROWS: usize = 20;

/// How often a snapshot is published while files are read and served.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Takes the last records of the flows that leave the tables every
/// interval and hands them to the publisher's sinks, until stopped.
struct Drainer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Drainer {
    fn spawn(
        pipeline: Arc<Pipeline>,
        publisher: Arc<std::sync::Mutex<api::Publisher>>,
        interval: Duration,
    ) -> Drainer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("flowtap-ended".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    let ended = pipeline.take_ended_flows();
                    publisher.lock().expect("publisher lock").ended(&ended);
                }
            })
            .expect("spawning the thread that takes ended flows");
        Drainer { stop, thread }
    }

    fn stop(self) {
        let Drainer { stop, thread } = self;
        drop(stop);
        let _ = thread.join();
    }
}

fn pipeline_config(cli: &RunArgs) -> anyhow::Result<PipelineConfig> {
    let workers = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut config = PipelineConfig {
        workers,
        hash_seed: cli.hash_seed,
        // Files: the same answer every run.
        repeatable_seed: Some(0x0066_6c6f_7774_6170),
        ingest: setup::ingest_config(cli)?,
        queue_capacity: cli.handoff_queue as usize,
        ..PipelineConfig::default()
    };
    config.table = setup::table_config(cli, None, config.inbox_bytes())?;
    Ok(config)
}

/// What `-r FILE` names, looked at without reading it: standard input's
/// for `-`. None if it cannot be looked at (said when it is read).
fn metadata_of(file: &std::path::Path) -> Option<std::fs::Metadata> {
    use std::os::fd::AsFd;
    if file.as_os_str() == "-" {
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata())
            .ok()
    } else {
        std::fs::metadata(file).ok()
    }
}

/// Refuses standard input, or any other stream (a FIFO, a socket, a
/// device), given more than once, under one name or two (`-r - -r
/// /dev/stdin`): the second would read nothing, the first having read the
/// stream to its end, and end the run as an empty file. A file given twice
/// is read twice ([`warn_of_files_given_twice`]).
fn refuse_streams_given_twice(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        anyhow::bail!("-r - is given more than once: standard input is read once");
    }
    let mut seen = std::collections::HashMap::new();
    for file in files {
        let Some(metadata) = metadata_of(file) else {
            continue;
        };
        // Files are read again; a directory is refused when it is read.
        if metadata.is_file() || metadata.is_dir() {
            continue;
        }
        if let Some(first) = seen.insert((metadata.dev(), metadata.ino()), file) {
            anyhow::bail!(
                "-r {} and -r {} are one stream (standard input, a pipe or a device): it is read once",
                first.display(),
                file.display()
            );
        }
    }
    Ok(())
}

/// Says which files are given more than once, under any names (a link,
/// `-` with that file as standard input): read as one stream, their
/// packets count twice (and their TCP connections look retransmitted),
/// which a user who meant one file does not see in the answer.
fn warn_of_files_given_twice(files: &[std::path::PathBuf]) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashMap::new();
    for file in files {
        let Some(metadata) = metadata_of(file).filter(|m| m.is_file()) else {
            continue;
        };
        if let Some(first) = seen.insert((metadata.dev(), metadata.ino()), file) {
            let also = if first == file {
                String::new()
            } else {
                format!(" (as -r {} too)", first.display())
            };
            eprintln!(
                "flowtap: warning: -r {} is given more than once{also}: its packets are counted each time",
                file.display()
            );
        }
    }
}

/// Says which files were read out of time order: files are read one after
/// the other as given, not merged by time (the two directions of a TAP as
/// two files, rotated files in the wrong order), so a reply can come before
/// its request and connections look unanswered or retransmitted.
fn warn_of_files_out_of_time_order(outcomes: &[FileOutcome]) {
    let late = FileOutcome::read_out_of_time_order(outcomes);
    for (outcome, reached) in &late {
        let first = outcome.span_ns.map_or(0, |(first, _)| first);
        eprintln!(
            "flowtap: warning: {} starts at {}, before the files read ahead of it end ({}): \
             files are read in the order given, not merged by time",
            outcome.path.display(),
            api::rest::render::iso8601(first),
            api::rest::render::iso8601(*reached),
        );
    }
    if !late.is_empty() {
        eprintln!(
            "flowtap: warning: give the files in time order, or merge them by time first \
             (mergecap -w merged.pcapng FILE...), or replies may be counted before their requests"
        );
    }
}

/// Says how many frames of a file were stamped far from the time the
/// capture was at, without the frames after them to confirm it, and so
/// counted at that time ([`pipeline::source::STAMP_JUMP_NS`]), naming the
/// first by its number in the file, as tshark numbers frames
/// (`tshark -r F -Y frame.number==N`).
fn warn_of_frames_restamped(outcome: &FileOutcome) {
    let r = &outcome.restamped;
    let Some((number, ts_ns)) = r.first else {
        return;
    };
    let seconds = pipeline::source::STAMP_JUMP_NS / pipeline::time::SECOND;
    eprintln!(
        "flowtap: warning: {}: {} frame(s) stamped more than {seconds} s from the time the \
         capture was at, which the frames after them did not confirm, counted at that time \
         (the first: frame {number}, stamped {})",
        outcome.path.display(),
        r.frames,
        api::rest::render::iso8601(ts_ns),
    );
}

/// Says where a file's stamps stepped back, confirmed by the frames after
/// (a clock set back by NTP, captures joined out of order): its frames are
/// counted as stamped, but the clock rates and idle expiry go by never goes
/// back, so what came after reads as that much older (a rate of 0, a flow
/// expired under an idle timeout).
fn warn_of_a_step_back(outcome: &FileOutcome) {
    let Some((number, ts_ns, back_ns)) = outcome.restamped.stepped_back else {
        return;
    };
    eprintln!(
        "flowtap: warning: {}: its stamps step back {:.1} s at frame {number} (stamped {}), \
         and the frames after confirm it: they count as stamped, but rates, idle expiry and \
         the handshake window go by the newest stamp before them, and read them as that \
         much older (merge or split such captures by time first)",
        outcome.path.display(),
        back_ns as f64 / pipeline::time::SECOND as f64,
        api::rest::render::iso8601(ts_ns),
    );
}

/// Says which files have no frame stamped after their first (a tool that
/// zeroed every stamp, or wrote none): their rates read 0 and every
/// handshake 0 µs, which is no measurement.
fn warn_of_files_without_time(outcome: &FileOutcome) {
    if let Some((first, last)) = outcome.span_ns
        && first == last
        && outcome.frames > 1
        && outcome.restamped.frames == 0
    {
        eprintln!(
            "flowtap: warning: {}: none of its {} frames is stamped after the first ({}): \
             its rates and handshake times mean nothing",
            outcome.path.display(),
            outcome.frames,
            api::rest::render::iso8601(first),
        );
    }
}

/// Runs the offline job; returns the process exit status.
pub(crate) fn run(cli: &RunArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    refuse_streams_given_twice(&cli.read)?;
    let publisher = setup::publisher(cli)?;
    if cli.serve.listen.is_none() {
        // No /metrics to serve them in.
        publisher
            .lock()
            .expect("publisher lock")
            .without_pair_counters();
    }
    // Before the service says where it serves: a signal sent from then on
    // stops the reading.
    let stop = StopWhileReading::catch()?;
    // Bind before reading, so a taken port fails at once.
    let service = match cli.serve.listen {
        Some(_) => Some(Service::start(
            cli.serve.listen(),
            publisher.clone(),
            cli.serve.server_config(cli.snapshot_interval)?,
            &[],
            None,
            None,
        )?),
        None => None,
    };

    warn_of_files_given_twice(&cli.read);
    let (source, report) = FileSource::new(cli.read.clone());
    let source = source.stop_when(stop.flag());
    let progress = source.progress();
    let source = fault::planted(source)?;
    let display = crate::progress::start(&cli.read, progress);
    let config = pipeline_config(cli)?;
    setup::publish_handoff_capacity(&publisher, &config);
    let pipeline = Arc::new(Pipeline::start(config, vec![source]));
    // While serving, publish progress as the files are read; so too while
    // connection records are exported, whose queues each snapshot empties.
    let publishing = service.is_some() || setup::connection_records(cli);
    let merger = publishing.then(|| {
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
    // Without those snapshots, flows that leave the tables (IPFIX per
    // flow) are taken a second at a time all the same: their records'
    // queue holds a second's worth, not the whole read's.
    let drainer = (setup::flow_records(cli) && !publishing)
        .then(|| Drainer::spawn(pipeline.clone(), publisher.clone(), PUBLISH_INTERVAL));
    let finished = pipeline.finish();
    if let Some(m) = merger {
        m.stop();
    }
    // Before the last snapshot is published, after which the exporter
    // takes nothing more.
    if let Some(d) = drainer {
        d.stop();
    }
    if let Some(display) = display {
        display.finish();
    }
    let snapshot = finished.map_err(|why| anyhow::anyhow!("reading failed: {why}"))?;
    // The final snapshot holds everything now: free the tables (the larger
    // part of the memory) before the API's view of the snapshot is built.
    drop(pipeline);
    let outcomes = std::mem::take(&mut *report.lock().expect("reader thread finished"));
    // Said where a service's clients look too, not only on stderr: a file
    // that could not be read made a served answer look whole.
    let failed_files = outcomes
        .iter()
        .filter(|o| {
            o.error
                .as_ref()
                .is_some_and(|e| !matches!(e, CaptureError::Stopped { .. }))
        })
        .count();
    publisher
        .lock()
        .expect("publisher lock")
        .stats()
        .capture_files_failed
        .store(failed_files as u64, std::sync::atomic::Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let snapshot = {
        let mut publisher = publisher.lock().expect("publisher lock");
        // The capture is over: every flow's last counts go to the collectors.
        publisher.publish_last(snapshot)
    };
    // Reading is done: from now on a stop signal ends the process at once,
    // or the service's handlers take it. One that came by now stopped the
    // reading (or came as it ended): what was read is answered and
    // exported, not served.
    let stopped = match &service {
        Some(s) => {
            let stopped = stop.hand_over(s)?;
            s.set_readiness(match stopped {
                None => Readiness::Ready,
                Some(_) => Readiness::Stopping,
            });
            stopped
        }
        None => stop.end_at_once(),
    };
    // Printed once the final snapshot is served.
    report_run(&snapshot, &outcomes, seconds);
    setup::report(&publisher, &[]);

    // The answers on stdout; what could not be read is said after them
    // even when writing them fails (a closed pipe, a full disk).
    let printed = (|| -> anyhow::Result<bool> {
        let mut targets = cli.serve.dump.clone();
        if targets.is_empty() && service.is_none() {
            if cli.serve.json {
                targets.push(api::rest::SUMMARY_PATH.to_owned());
            } else {
                let view = publisher
                    .lock()
                    .expect("publisher lock")
                    .views()
                    .load_full();
                let answer = |path: &str, query: &str| api::respond(&view, path, query).body;
                let flows = answer(api::rest::FLOWS_PATH, &crate::table::query(TABLE_ROWS));
                let summary = answer(api::rest::SUMMARY_PATH, "");
                let table = crate::table::top_flows(
                    &serde_json::from_slice(&flows).context("reading the flows answer")?,
                    &serde_json::from_slice(&summary).context("reading the summary")?,
                    "--json for the API's summary, --dump for any answer",
                    None,
                );
                std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{table}"))
                    .context("writing to stdout")?;
            }
        }
        setup::dump(&publisher, &targets)
    })();
    setup::report_memory(cli);
    // What could not be read, last: where a person at a terminal looks
    // for why the exit status is 2.
    warn_of_files_out_of_time_order(&outcomes);
    for outcome in &outcomes {
        for u in outcome.unreadable.iter().filter(|u| u.frames > 0) {
            eprintln!("flowtap: warning: {}: {u}", outcome.path.display());
        }
        warn_of_frames_restamped(outcome);
        warn_of_a_step_back(outcome);
        warn_of_files_without_time(outcome);
        match (&outcome.error, stopped) {
            (Some(e @ CaptureError::Stopped { .. }), Some((signal, _))) => {
                eprintln!("flowtap: stopped by {signal}: {e}")
            }
            (Some(e), _) => eprintln!("flowtap: error: {e}"),
            (None, _) => {}
        }
    }
    let not_read = cli.read.len().saturating_sub(outcomes.len());
    if let Some((signal, status)) = stopped {
        let cut = outcomes
            .iter()
            .any(|o| matches!(o.error, Some(CaptureError::Stopped { .. })));
        if not_read > 0 {
            eprintln!("flowtap: stopped by {signal}: {not_read} more file(s) not read");
        } else if !cut {
            eprintln!("flowtap: stopped by {signal} as reading ended");
        }
        // Whatever printing the answers met: the stop is why the run ended.
        if let Some(service) = service {
            service.stop();
        }
        return Ok(status);
    }
    let file_errors = failed_files > 0;
    let failed = match printed {
        // A reader that has read enough (`| head`) ends the run, which is
        // no failure (exit 0); but a file that could not be read still
        // exits 2 (`set -o pipefail` took a damaged capture for a good one).
        Err(e) if file_errors && crate::stdout_closed(&e) => return Ok(2),
        printed => printed?,
    };

    if let Some(service) = service {
        service.run_until_signal(|| None)?;
        service.stop();
    }
    Ok(if file_errors || failed { 2 } else { 0 })
}

/// The first line of the end-of-run report: what was read.
fn report_run(snapshot: &Snapshot, outcomes: &[FileOutcome], seconds: f64) {
    let c = &snapshot.counters;
    eprintln!(
        "flowtap: read {} frames ({} bytes) from {} file(s) in {:.3} s",
        c.ingest.frames,
        c.ingest.bytes,
        outcomes.len(),
        seconds
    );
}
