//! Progress of a long `-r` run, on stderr when stderr is a terminal:
//! frames, bytes, frame rate, and the position in the files (with a bar and
//! an estimate when their sizes are known; a pipe has none). indicatif draws
//! and clears it. Nothing is drawn for runs shorter than [`QUIET_FOR`], nor
//! ever when stderr is a file or a pipe, so logs get no control characters.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline::source::ReadProgress;

/// Runs shorter than this show no progress at all.
const QUIET_FOR: Duration = Duration::from_millis(500);
const REDRAW: Duration = Duration::from_millis(200);

/// The display while it runs; [`ProgressDisplay::finish`] clears it.
pub(crate) struct ProgressDisplay {
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Starts showing `progress` of reading `paths`, if stderr is a terminal.
pub(crate) fn start(paths: &[PathBuf], progress: Arc<ReadProgress>) -> Option<ProgressDisplay> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    // Known only if every input is a regular file.
    let total: Option<u64> = paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
        })
        .sum();
    let files = paths.len();
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let done = done.clone();
        std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || show(&progress, total, files, &done))
            .expect("starting the progress thread")
    };
    Some(ProgressDisplay { done, thread })
}

fn show(progress: &ReadProgress, total: Option<u64>, files: usize, done: &AtomicBool) {
    let started = Instant::now();
    while started.elapsed() < QUIET_FOR {
        if done.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(REDRAW / 4);
    }
    let bar = match total {
        Some(bytes) => ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} of the files, {percent}%, eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg}, {bytes} of the input")
                .expect("a valid template"),
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    loop {
        let frames = progress.frames.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        bar.set_position(progress.position());
        bar.set_message(format!(
            "file {}/{files}: {} frames, {} on the wire, {} frames/s",
            (progress.files_done.load(Ordering::Relaxed) as usize + 1).min(files),
            HumanCount(frames),
            HumanBytes(progress.bytes.load(Ordering::Relaxed)),
            HumanCount((frames as f64 / seconds) as u64),
        ));
        if done.load(Ordering::Acquire) {
            bar.finish_and_clear();
            return;
        }
        std::thread::sleep(REDRAW);
    }
}

impl ProgressDisplay {
    /// The reading is over: the display is cleared before the results print.
    pub(crate) fn finish(self) {
        self.done.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}
