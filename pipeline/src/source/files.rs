//! Capture files as a pipeline source: the files are read one after the
//! other, in the order given, as one stream.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Frame, PacketSource, Poll};
use crate::capture::{CaptureError, CaptureFile};

/// Frames read per poll.
const BATCH: usize = 256;

/// How one file went.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub frames: u64,
    /// Why reading stopped early; the frames before it were counted.
    pub error: Option<CaptureError>,
}

/// Shared record of every file's outcome, readable after the run.
pub type FileReport = Arc<Mutex<Vec<FileOutcome>>>;

pub struct FileSource {
    pending: std::vec::IntoIter<PathBuf>,
    current: Option<CaptureFile>,
    report: FileReport,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> (FileSource, FileReport) {
        let report = FileReport::default();
        let source = FileSource {
            pending: paths.into_iter(),
            current: None,
            report: report.clone(),
        };
        (source, report)
    }

    fn record(&self, path: PathBuf, frames: u64, error: Option<CaptureError>) {
        // A poisoned lock means a reader panicked; the report is then moot.
        if let Ok(mut report) = self.report.lock() {
            report.push(FileOutcome {
                path,
                frames,
                error,
            });
        }
    }
}

impl PacketSource for FileSource {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        loop {
            if self.current.is_none() {
                let Some(path) = self.pending.next() else {
                    return Poll::Finished;
                };
                match CaptureFile::open(&path) {
                    Ok(file) => self.current = Some(file),
                    Err(e) => {
                        self.record(path, 0, Some(e));
                        continue;
                    }
                }
            }
            let file = self.current.as_mut().expect("opened above");
            match file.read_frames(BATCH, &mut on_frame) {
                Ok(0) => {
                    let file = self.current.take().expect("checked above");
                    self.record(file.path().to_path_buf(), file.frames(), None);
                }
                Ok(_) => return Poll::Busy,
                Err(e) => {
                    let file = self.current.take().expect("checked above");
                    self.record(file.path().to_path_buf(), file.frames(), Some(e));
                }
            }
        }
    }
}
