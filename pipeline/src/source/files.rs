//! Capture files as a pipeline source: the files are read one after the
//! other, in the order given, as one stream.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::stamps::{Restamped, STAMP_JUMP_NS, Stamps};
use super::{Frame, PacketSource, Poll};
use crate::capture::{CaptureError, CaptureFile, UnreadableInterface};

/// Frames read per poll.
const BATCH: usize = 256;

/// How long a pipe may stay quiet with frames held for their stamps to be
/// judged before they are judged as at a file's end: no frame is coming
/// to judge them, and a sparse capture's next frame far after the last (a
/// DNS query every 30 s through `tcpdump -U -w - | flowtap -r -`) was
/// answered only once the pipe closed.
const QUIET_PIPE_SETTLES_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How one file went.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub frames: u64,
    /// Why reading stopped early; the frames before it were counted.
    pub error: Option<CaptureError>,
    /// Interfaces of link types flowtap cannot read, and their frames.
    pub unreadable: Vec<UnreadableInterface>,
    /// The capture times of its first frame and of its latest, in
    /// nanoseconds since the Unix epoch (none without frames): files are
    /// read one after the other, so one that starts before an earlier one
    /// ends is read out of time order, which the reader says.
    pub span_ns: Option<(u64, u64)>,
    /// Frames stamped far from the time the capture was at, which the
    /// frames after them did not confirm, counted at that time
    /// ([`super::stamps`]).
    pub restamped: Restamped,
}

impl FileOutcome {
    /// Files, in the order read, that start before a file read earlier
    /// ended: with the time the earlier files reached by then. Two files of
    /// one TAP's two directions, or rotated files given out of order, are
    /// read one after the other and not merged by time, so a reply can come
    /// before its request.
    pub fn read_out_of_time_order(outcomes: &[FileOutcome]) -> Vec<(&FileOutcome, u64)> {
        let mut reached: Option<u64> = None;
        let mut late = Vec::new();
        for outcome in outcomes {
            let Some((first, last)) = outcome.span_ns else {
                continue;
            };
            if let Some(reached) = reached
                && first < reached
            {
                late.push((outcome, reached));
            }
            reached = Some(reached.map_or(last, |r| r.max(last)));
        }
        late
    }
}

/// Shared record of every file's outcome, readable after the run.
pub type FileReport = Arc<Mutex<Vec<FileOutcome>>>;

/// How far the reading has come, for a progress display: updated once per
/// batch of frames, read from any thread.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Frames and their bytes on the wire, read from all files so far.
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Files finished, and the position in the one being read.
    pub files_done: AtomicU64,
    pub offset: AtomicU64,
    /// The bytes of every file before the current one.
    pub offset_before: AtomicU64,
}

impl ReadProgress {
    /// Bytes of the files consumed so far, across files.
    pub fn position(&self) -> u64 {
        self.offset_before.load(Ordering::Relaxed) + self.offset.load(Ordering::Relaxed)
    }
}

pub struct FileSource {
    pending: std::vec::IntoIter<PathBuf>,
    current: Option<CaptureFile>,
    /// The current file's first and latest capture times.
    span_ns: Option<(u64, u64)>,
    /// The current file's frames, their stamps judged.
    stamps: Stamps,
    report: FileReport,
    progress: Arc<ReadProgress>,
    /// Once set, reading ends where it is, as if the files ended there.
    stop: Arc<AtomicBool>,
    /// Since when the pipe being read has brought nothing.
    quiet_since: Option<std::time::Instant>,
    /// When a frame was last passed on.
    last_passed: Option<std::time::Instant>,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> (FileSource, FileReport) {
        let report = FileReport::default();
        let source = FileSource {
            pending: paths.into_iter(),
            current: None,
            span_ns: None,
            stamps: Stamps::default(),
            report: report.clone(),
            progress: Arc::default(),
            stop: Arc::default(),
            quiet_since: None,
            last_passed: None,
        };
        (source, report)
    }

    /// Reading ends once `stop` is set (a stop signal): the file being read
    /// is recorded as read up to there ([`CaptureError::Stopped`]), the
    /// frames held for their stamps to be judged are passed on, and the
    /// files after it are not opened. A read waiting on a pipe ends only
    /// when the pipe brings something.
    pub fn stop_when(self, stop: Arc<AtomicBool>) -> FileSource {
        FileSource { stop, ..self }
    }

    /// The reading's progress, shared.
    pub fn progress(&self) -> Arc<ReadProgress> {
        self.progress.clone()
    }

    fn record(
        &mut self,
        path: PathBuf,
        frames: u64,
        unreadable: Vec<UnreadableInterface>,
        error: Option<CaptureError>,
        restamped: Restamped,
    ) {
        let span_ns = self.span_ns.take();
        let p = &self.progress;
        p.offset_before
            .fetch_add(p.offset.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        p.files_done.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock means a reader panicked; the report is then moot.
        if let Ok(mut report) = self.report.lock() {
            report.push(FileOutcome {
                path,
                frames,
                error,
                unreadable,
                span_ns,
                restamped,
            });
        }
    }
}

impl PacketSource for FileSource {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if self.current.is_none() {
                let next = if stopping { None } else { self.pending.next() };
                let Some(path) = next else {
                    return Poll::Finished;
                };
                match CaptureFile::open(&path) {
                    Ok(file) => self.current = Some(file),
                    Err(e) => {
                        self.record(path, 0, Vec::new(), Some(e), Restamped::default());
                        continue;
                    }
                }
            }
            let file = self.current.as_mut().expect("opened above");
            let mut bytes = 0u64;
            let span = &mut self.span_ns;
            // Frames as passed on: their stamps judged, counted as stamped.
            let mut deliver = |frame: Frame<'_>| {
                bytes += u64::from(frame.wire_len);
                let ts = frame.ts_ns;
                *span = Some(span.map_or((ts, ts), |(first, last)| (first, last.max(ts))));
                on_frame(frame)
            };
            let stamps = &mut self.stamps;
            let mut number = file.frames();
            let read = match stopping {
                true => Err(file.stopped()),
                false => file.read_frames(BATCH, &mut |frame: Frame<'_>| {
                    number += 1;
                    stamps.pass(number, frame, &mut deliver);
                }),
            };
            // A pipe that brought nothing yet is not at its end: the worker
            // goes on (answering snapshots) and reads again.
            let waiting = !stopping && file.nothing_yet();
            if waiting && matches!(read, Ok(0)) {
                let since = *self.quiet_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= QUIET_PIPE_SETTLES_AFTER && stamps.holds_frames() {
                    // A jump stands if no longer than the pipe has taken
                    // since it last passed a frame on, as frames follow.
                    let quiet = self.last_passed.unwrap_or(since).elapsed();
                    let trusted = u64::try_from(quiet.as_nanos()).unwrap_or(u64::MAX);
                    stamps.settle_within(trusted.saturating_add(STAMP_JUMP_NS), &mut deliver);
                }
            } else {
                self.quiet_since = None;
            }
            let finished = !waiting && !matches!(read, Ok(n) if n > 0);
            let restamped = finished.then(|| stamps.finish(&mut deliver));
            if bytes > 0 {
                self.last_passed = Some(std::time::Instant::now());
            }
            let p = &self.progress;
            p.offset.store(file.offset(), Ordering::Relaxed);
            p.bytes.fetch_add(bytes, Ordering::Relaxed);
            if let Ok(n) = read {
                p.frames.fetch_add(n as u64, Ordering::Relaxed);
            }
            let Some(restamped) = restamped else {
                return match read {
                    Ok(0) => Poll::Idle,
                    _ => Poll::Busy,
                };
            };
            let file = self.current.take().expect("checked above");
            let unreadable = file.unreadable().to_vec();
            let path = file.path().to_path_buf();
            self.record(path, file.frames(), unreadable, read.err(), restamped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, span_ns: Option<(u64, u64)>) -> FileOutcome {
        FileOutcome {
            path: PathBuf::from(name),
            frames: u64::from(span_ns.is_some()),
            error: None,
            unreadable: Vec::new(),
            span_ns,
            restamped: Restamped::default(),
        }
    }

    /// A classic pcap of `frames` minimal Ethernet frames, a millisecond
    /// apart.
    fn pcap_of(frames: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Magic, version 2.4 (two 16-bit fields), zone, accuracy, snap
        // length, Ethernet.
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            bytes.extend(word.to_le_bytes());
        }
        for i in 0..frames {
            let frame = [0u8; 60];
            for word in [1_700_000_000, i * 1000, 60, 60] {
                bytes.extend(word.to_le_bytes());
            }
            bytes.extend(frame);
        }
        bytes
    }

    #[test]
    fn a_stop_ends_the_read_where_it_is_and_says_so() {
        let dir = std::env::temp_dir().join(format!("flowtap-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = [dir.join("first.pcap"), dir.join("second.pcap")];
        for path in &paths {
            std::fs::write(path, pcap_of(1000)).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (source, report) = FileSource::new(paths.to_vec());
        let mut source = source.stop_when(stop.clone());
        let mut delivered = 0u64;
        assert_eq!(source.poll(|_| delivered += 1), Poll::Busy);
        assert!(delivered > 0 && delivered < 1000, "{delivered}");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(source.poll(|_| delivered += 1), Poll::Finished);
        std::fs::remove_dir_all(&dir).unwrap();

        // The first file read up to the stop, every frame read passed on;
        // the second never opened.
        let report = report.lock().unwrap();
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(report[0].frames, delivered);
        match &report[0].error {
            Some(CaptureError::Stopped { offset, frames, .. }) => {
                assert_eq!(*frames, delivered);
                assert_eq!(*offset, 24 + delivered * (16 + 60));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_that_starts_before_an_earlier_one_ends_is_out_of_time_order() {
        let outcomes = [
            outcome("a", Some((10, 20))),
            // Empty files and ones that follow the others are in order.
            outcome("empty", None),
            outcome("b", Some((20, 30))),
            // The other direction of a TAP, from the start.
            outcome("c", Some((12, 25))),
            // Before the latest time of any file read before it.
            outcome("d", Some((29, 40))),
            outcome("e", Some((40, 41))),
        ];
        let late: Vec<(&str, u64)> = FileOutcome::read_out_of_time_order(&outcomes)
            .into_iter()
            .map(|(o, reached)| (o.path.to_str().unwrap(), reached))
            .collect();
        assert_eq!(late, [("c", 30), ("d", 30)]);
    }
}
