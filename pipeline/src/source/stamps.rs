//! Frames of capture files stamped far from the frames around them.
//!
//! The files' time is their frames' stamps: the flow table's clock is the
//! newest stamp seen, and rates, idle expiry and "last seen" are reckoned
//! from it. One frame stamped a year ahead (a bit flipped in a record's
//! seconds, a device whose clock was unset for a moment) moved that clock a
//! year on for the rest of the run: every rate read 0, every flow was idle
//! a year, and with an idle timeout every flow expired. A stamp far from
//! the time the capture is at may also be the capture's own gap (a quiet
//! link, captures joined end to end, a sparse capture), and only the frames
//! after it can tell the two apart. So such frames are held: a run of
//! [`FRAMES_CONFIRMING`] frames, each nearer the one before it than the
//! time before the jump, confirms the jump, and all are taken as stamped; a
//! frame back near the time before shows the run was wrong, and its frames
//! are counted at that time (said, with the first's frame number, at the
//! end of the run). Frames near each other pass at once, uncopied: only a
//! jump copies frames.
//!
//! Each file is judged on its own frames (a file after a day's gap, or one
//! whose stamps a tool zeroed, is no reason to doubt the next). A file's
//! first frame has no time before it: it is taken as stamped once a frame
//! near it comes, or once frames after it agree on a time it is not off
//! from (ahead of it by [`STAMP_JUMP_NS`], or before it by
//! [`FIRST_FRAME_OFF_NS`]); off, it is counted at that time instead. Two
//! frames alone, far apart, are both taken as stamped.

use super::Frame;
use crate::time::SECOND;
use crate::wire::dissect::LinkType;

/// How far a frame's stamp may be from the time the capture is at before
/// frames after it must confirm it: the rate window's length, far shorter
/// than any idle timeout.
pub const STAMP_JUMP_NS: u64 = 10 * SECOND;

/// Frames in a row that confirm a jump.
const FRAMES_CONFIRMING: usize = 8;

/// Frames of a jump forward that a file's end leaves unconfirmed stand
/// each within this of the one before that stood (a quiet capture's last
/// frames); further, they are counted at that one's time.
const TRUSTED_AT_END_NS: u64 = 3_600 * SECOND;

/// A file's first frame is counted at the time the frames after it agree
/// on when it is further than this before it (a quiet start is earlier;
/// ahead of it, [`STAMP_JUMP_NS`] is off).
const FIRST_FRAME_OFF_NS: u64 = 3_600 * SECOND;

/// Bytes of frames held at once: past it a run is judged as at a file's
/// end (a crafted file of 8 MiB records holds no more).
const MAX_HELD_BYTES: usize = 4 << 20;

/// A held frame's buffer larger than this is let go, not kept for the next.
const SPARE_BYTES: usize = 64 << 10;

/// Frames of one file counted at another time than their stamps'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restamped {
    pub frames: u64,
    /// The first of them: its number in the file (from 1, as tshark and
    /// Wireshark number frames) and its stamp.
    pub first: Option<(u64, u64)>,
    /// The first step back the frames after it confirmed (a clock set
    /// back, captures joined out of order): its frame's number and stamp,
    /// and how far before the time the capture was at. Its frames stand as
    /// stamped, but the clock that rates, idle expiry and the handshake
    /// window are reckoned by never goes back: they read as that much
    /// older.
    pub stepped_back: Option<(u64, u64, u64)>,
}

/// A frame held until the frames after it say whether its stamp stands.
#[derive(Debug)]
struct Held {
    number: u64,
    ts_ns: u64,
    wire_len: u32,
    link: LinkType,
    data: Vec<u8>,
    /// Where frames after it showed it wrong inside a run: the time it is
    /// counted at.
    restamp: Option<u64>,
}

/// Frames passed on in order, their stamps judged.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    /// The time the capture is at: the stamp of the last frame taken as
    /// stamped (none before the file's first frame is judged).
    at_ns: Option<u64>,
    /// The file's first frame, until judged.
    first: Option<Held>,
    /// Frames far from the time the capture is at, until judged.
    run: Vec<Held>,
    held_bytes: usize,
    /// Buffers of frames held before, kept for the next.
    spare: Vec<Vec<u8>>,
    restamped: Restamped,
}

fn far(a: u64, b: u64) -> bool {
    a.abs_diff(b) > STAMP_JUMP_NS
}

impl Stamps {
    /// Passes on `frame`, the file's `number`th, or holds it; passes on
    /// first the frames held before it that it decides.
    pub(super) fn pass(
        &mut self,
        number: u64,
        frame: Frame<'_>,
        on_frame: &mut impl FnMut(Frame<'_>),
    ) {
        self.judge(number, frame, on_frame);
        if self.held_bytes > MAX_HELD_BYTES {
            self.settle(on_frame);
        }
    }

    fn judge(&mut self, number: u64, frame: Frame<'_>, on_frame: &mut impl FnMut(Frame<'_>)) {
        let Some(before) = self.at_ns.or(self.first.as_ref().map(|f| f.ts_ns)) else {
            self.first = Some(self.hold(number, &frame));
            return;
        };
        let nearer = |a: u64, b: u64| frame.ts_ns.abs_diff(a) < frame.ts_ns.abs_diff(b);
        if let Some(last) = self.run.last() {
            // Nearer the run's last frame than the time before, or nearer
            // an earlier one of the run (which then goes on, the frames
            // after that one wrong: a frame a year ahead inside a real gap).
            let goes_on = if nearer(last.ts_ns, before) {
                Some(self.run.len() - 1)
            } else {
                self.run
                    .iter()
                    .rposition(|h| h.restamp.is_none() && nearer(h.ts_ns, before))
            };
            if let Some(k) = goes_on {
                let at = self.run[k].ts_ns;
                for wrong in &mut self.run[k + 1..] {
                    wrong.restamp = Some(at);
                }
                let held = self.hold(number, &frame);
                self.run.push(held);
                if self.run.len() >= FRAMES_CONFIRMING {
                    self.confirm_run(on_frame);
                }
                return;
            }
            // Back near the time before: the run was wrong.
            self.reject_run(on_frame);
        }
        if far(frame.ts_ns, before) {
            let held = self.hold(number, &frame);
            self.run.push(held);
        } else {
            // Near the file's first frame: it stands.
            if let Some(first) = self.first.take() {
                self.release(first, None, on_frame);
            }
            self.at_ns = Some(frame.ts_ns);
            on_frame(frame);
        }
    }

    /// The end of a file: frames still held have no frames after them to
    /// judge them ([`Self::settle`]). Returns the file's restamped frames,
    /// and starts afresh for the next file.
    pub(super) fn finish(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) -> Restamped {
        self.settle(on_frame);
        self.at_ns = None;
        std::mem::take(&mut self.restamped)
    }

    /// Whether frames are held for the frames after them to judge.
    pub(super) fn holds_frames(&self) -> bool {
        self.first.is_some() || !self.run.is_empty()
    }

    /// Judges the frames held without the frames after them (a file's end,
    /// a pipe gone quiet, or more bytes held than [`MAX_HELD_BYTES`]): a
    /// file's first frame
    /// against the run after it, if two or more (nothing tells which is
    /// wrong of two frames); the run's frames one after the other, each
    /// standing within [`TRUSTED_AT_END_NS`] of the one before that stood
    /// (and, after the time the capture is at, ahead of it).
    pub(super) fn settle(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) {
        self.settle_within(TRUSTED_AT_END_NS, on_frame);
    }

    /// [`Self::settle`], each frame of the run standing within `trusted_ns`
    /// of the one before that stood: a pipe gone quiet trusts a jump no
    /// longer than it has been quiet (and [`STAMP_JUMP_NS`]), as frames
    /// come after it (a sparse capture's next frame comes as late as it is
    /// stamped; a frame a year ahead, followed by a pause, does not).
    pub(super) fn settle_within(&mut self, trusted_ns: u64, on_frame: &mut impl FnMut(Frame<'_>)) {
        let mut run = std::mem::take(&mut self.run).into_iter();
        let (mut at, ahead_of) = match (self.at_ns, self.first.take()) {
            (Some(at), first) => {
                // (A first frame is held only before the time is known.)
                if let Some(first) = first {
                    self.release(first, None, on_frame);
                }
                (at, Some(at))
            }
            (None, Some(first)) => match run.next() {
                None => {
                    self.release(first, None, on_frame);
                    return;
                }
                Some(start) => {
                    let restamp = (run.len() >= 1 && first_is_off(first.ts_ns, start.ts_ns))
                        .then_some(start.ts_ns);
                    self.release(first, restamp, on_frame);
                    let at = start.ts_ns;
                    self.release(start, None, on_frame);
                    (at, None)
                }
            },
            (None, None) => {
                // (A run is held only after a time to hold it against.)
                for held in run {
                    self.release(held, None, on_frame);
                }
                return;
            }
        };
        for held in run {
            let ts = held.ts_ns;
            let stands = held.restamp.is_none()
                && ahead_of.is_none_or(|b| ts > b)
                && ts.abs_diff(at) <= trusted_ns;
            if stands {
                at = ts;
            }
            self.release(held, (!stands).then_some(at), on_frame);
        }
    }

    /// The capture moved: the run's frames stand (but those the frames
    /// after them showed wrong), and the file's first frame unless it is
    /// off from them.
    fn confirm_run(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) {
        let run = std::mem::take(&mut self.run);
        if let (Some(before), Some(start)) = (self.at_ns, run.first())
            && start.ts_ns < before
            && self.restamped.stepped_back.is_none()
        {
            self.restamped.stepped_back = Some((start.number, start.ts_ns, before - start.ts_ns));
        }
        if let (Some(first), Some(start)) = (self.first.take(), run.first().map(|h| h.ts_ns)) {
            let restamp = first_is_off(first.ts_ns, start).then_some(start);
            self.release(first, restamp, on_frame);
        }
        for held in run {
            self.release(held, None, on_frame);
        }
    }

    /// The run was wrong: its frames are counted at the time before it
    /// (the file's first frame's, which then stands, if no other).
    fn reject_run(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) {
        if let Some(first) = self.first.take() {
            self.release(first, None, on_frame);
        }
        let at = self.at_ns;
        for held in std::mem::take(&mut self.run) {
            self.release(held, at, on_frame);
        }
    }

    fn hold(&mut self, number: u64, frame: &Frame<'_>) -> Held {
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(frame.data);
        self.held_bytes += data.len();
        Held {
            number,
            ts_ns: frame.ts_ns,
            wire_len: frame.wire_len,
            link: frame.link,
            data,
            restamp: None,
        }
    }

    /// Passes `held` on at its stamp, or at `restamp`, else at the time
    /// frames after it marked it with (either counted); the time the
    /// capture is at follows what is passed on.
    fn release(&mut self, held: Held, restamp: Option<u64>, on_frame: &mut impl FnMut(Frame<'_>)) {
        let ts_ns = match restamp.or(held.restamp) {
            Some(at) => {
                self.restamped.frames += 1;
                self.restamped
                    .first
                    .get_or_insert((held.number, held.ts_ns));
                at
            }
            None => held.ts_ns,
        };
        self.at_ns = Some(ts_ns);
        on_frame(Frame {
            ts_ns,
            wire_len: held.wire_len,
            link: held.link,
            data: &held.data,
        });
        self.held_bytes -= held.data.len();
        // Buffers kept for the next frames held: not a jumbo record's.
        if self.spare.len() < FRAMES_CONFIRMING + 1 && held.data.capacity() <= SPARE_BYTES {
            self.spare.push(held.data);
        }
    }
}

/// Whether a file's first frame is off from the time the frames after it
/// agree on (`start`): ahead of it at all (a quiet start is earlier, never
/// later), or more than [`FIRST_FRAME_OFF_NS`] before it.
fn first_is_off(first_ns: u64, start_ns: u64) -> bool {
    if first_ns > start_ns {
        far(first_ns, start_ns)
    } else {
        start_ns - first_ns > FIRST_FRAME_OFF_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600 * SECOND;
    const YEAR: u64 = 365 * 86_400 * SECOND;
    const HOUR: u64 = 3_600 * SECOND;

    /// Passes frames stamped `stamps` (each holding its index) through
    /// `judge` as one file; returns the stamps passed on, by index.
    fn judged_by(judge: &mut Stamps, stamps: &[u64]) -> (Vec<(u8, u64)>, Restamped) {
        let mut out = Vec::new();
        let mut take = |f: Frame<'_>| out.push((f.data[0], f.ts_ns));
        for (i, &ts_ns) in stamps.iter().enumerate() {
            let data = [i as u8];
            let frame = Frame {
                ts_ns,
                wire_len: 1,
                link: LinkType::Ethernet,
                data: &data,
            };
            judge.pass(i as u64 + 1, frame, &mut take);
        }
        let restamped = judge.finish(&mut take);
        (out, restamped)
    }

    fn judged(stamps: &[u64]) -> (Vec<(u8, u64)>, Restamped) {
        judged_by(&mut Stamps::default(), stamps)
    }

    fn as_stamped(stamps: &[u64]) -> Vec<(u8, u64)> {
        (0..).zip(stamps.iter().copied()).collect()
    }

    /// `n` frames a second apart from `from`.
    fn steady(from: u64, n: u64) -> Vec<u64> {
        (0..n).map(|i| from + i * SECOND).collect()
    }

    #[test]
    fn frames_stamped_far_from_both_sides_are_counted_at_the_time_before() {
        for wrong in [T + YEAR, T + 30 * SECOND, 5 * SECOND] {
            let mut stamps = steady(T, 20);
            stamps[10] = wrong;
            let (out, restamped) = judged(&stamps);
            let mut expected = as_stamped(&stamps);
            expected[10].1 = stamps[9];
            assert_eq!(out, expected);
            assert_eq!(
                restamped,
                Restamped {
                    frames: 1,
                    first: Some((11, wrong)),
                    stepped_back: None,
                }
            );
        }
        // Several in a row, alike or not, fewer than confirm a jump.
        let mut stamps = steady(T, 20);
        stamps[5..11].copy_from_slice(&[T + YEAR; 6]);
        stamps[11] = T + 2 * YEAR;
        let (out, restamped) = judged(&stamps);
        assert!(out[5..12].iter().all(|&(_, ts)| ts == stamps[4]), "{out:?}");
        assert_eq!(out[12..], as_stamped(&stamps)[12..]);
        assert_eq!(restamped.frames, 7);
        assert_eq!(restamped.first, Some((6, T + YEAR)));
    }

    #[test]
    fn a_gap_or_a_sparse_capture_is_confirmed_by_the_frames_after_it() {
        // A two-hour gap, a step back, a capture of a frame every quarter
        // of an hour, and a gap before the file's last few frames.
        let gap = [steady(T, 5), steady(T + 2 * HOUR, 10)].concat();
        let back = [steady(T, 5), steady(T - 2 * HOUR, 10)].concat();
        let sparse: Vec<u64> = (0..20).map(|i| T + i * 900 * SECOND).collect();
        let quiet_end = [steady(T, 5), steady(T + 600 * SECOND, 2)].concat();
        for stamps in [gap, sparse, quiet_end] {
            let (out, restamped) = judged(&stamps);
            assert_eq!(out, as_stamped(&stamps));
            assert_eq!(restamped, Restamped::default());
        }
        // A step back stands too, and is said: the clock never goes back.
        let (out, restamped) = judged(&back);
        assert_eq!(out, as_stamped(&back));
        assert_eq!(
            restamped,
            Restamped {
                stepped_back: Some((6, T - 2 * HOUR, 2 * HOUR + 4 * SECOND)),
                ..Restamped::default()
            }
        );
    }

    #[test]
    fn a_file_s_first_frame_is_judged_by_the_frames_after_it() {
        // Wrong: counted at the time the frames after it confirm.
        let mut stamps = steady(T, 12);
        stamps[0] = T + YEAR;
        let (out, restamped) = judged(&stamps);
        let mut expected = as_stamped(&stamps);
        expected[0].1 = stamps[1];
        assert_eq!(out, expected);
        assert_eq!(restamped.first, Some((1, T + YEAR)));
        // A quiet start (a frame, then traffic a minute later) stands.
        let stamps = [vec![T], steady(T + 60 * SECOND, 10)].concat();
        assert_eq!(judged(&stamps).0, as_stamped(&stamps));
        // A short file: the frames after it agree.
        let short = [T + YEAR, T, T + SECOND];
        assert_eq!(judged(&short).0, [(0, T), (1, T), (2, T + SECOND)]);
        // One frame alone stands, and two far apart both do.
        assert_eq!(judged(&[T]).0, [(0, T)]);
        assert_eq!(judged(&[T, T + YEAR]).0, [(0, T), (1, T + YEAR)]);
    }

    #[test]
    fn a_file_s_last_frames_far_ahead_stand_within_the_hour() {
        let late = [steady(T, 5), vec![T + 1_800 * SECOND]].concat();
        assert_eq!(judged(&late).0, as_stamped(&late));
        let wrong = [steady(T, 5), vec![T + YEAR]].concat();
        let (out, restamped) = judged(&wrong);
        assert_eq!(out[5], (5, T + 4 * SECOND));
        assert_eq!(restamped.first, Some((6, T + YEAR)));
    }

    #[test]
    fn each_file_is_judged_on_its_own_frames() {
        let mut judge = Stamps::default();
        // A file whose stamps a tool zeroed, then one a day on with few
        // frames: each stands.
        let (out, _) = judged_by(&mut judge, &[0, 0, 0]);
        assert_eq!(out, [(0, 0), (1, 0), (2, 0)]);
        let day = steady(T + 24 * HOUR, 3);
        let (out, restamped) = judged_by(&mut judge, &day);
        assert_eq!(out, as_stamped(&day));
        assert_eq!(restamped, Restamped::default());
        // The next file's first frame is wrong: judged by its own frames.
        let mut next = steady(T + 5 * SECOND, 5);
        next[0] = T + YEAR;
        let (out, restamped) = judged_by(&mut judge, &next);
        assert_eq!(out[0], (0, T + 6 * SECOND));
        assert_eq!(restamped.first, Some((1, T + YEAR)));
    }

    #[test]
    fn what_a_review_found_is_judged() {
        // A first frame half an hour ahead of the file's frames.
        let stamps = [vec![T + HOUR / 2], steady(T, 20)].concat();
        let (out, restamped) = judged(&stamps);
        assert_eq!(out[0], (0, T));
        assert_eq!(out[1..], as_stamped(&stamps)[1..]);
        assert_eq!(restamped.first, Some((1, T + HOUR / 2)));
        // A file's last frames: one within the hour, then one a year on.
        let late = T + 49 * SECOND + HOUR / 2;
        let stamps = [steady(T, 50), vec![late, T + YEAR]].concat();
        let (out, restamped) = judged(&stamps);
        assert_eq!(out[50..], [(50, late), (51, late)]);
        assert_eq!(restamped.first, Some((52, T + YEAR)));
        // A frame a year ahead inside a real two-hour gap: it alone.
        let gap = T + 2 * HOUR;
        let stamps = [
            steady(T, 5),
            vec![gap, gap + SECOND, T + YEAR],
            steady(gap + 2 * SECOND, 20),
        ]
        .concat();
        let (out, restamped) = judged(&stamps);
        let mut expected = as_stamped(&stamps);
        expected[7].1 = gap + SECOND;
        assert_eq!(out, expected);
        assert_eq!(
            restamped,
            Restamped {
                frames: 1,
                first: Some((8, T + YEAR)),
                stepped_back: None,
            }
        );
    }

    #[test]
    fn frames_held_stay_within_their_bound() {
        let mut judge = Stamps::default();
        let big = vec![0u8; 1 << 20];
        let mut passed = 0;
        let mut take = |_: Frame<'_>| passed += 1;
        for (i, ts_ns) in [T, T + YEAR, T + YEAR, T + YEAR, T + YEAR, T + YEAR]
            .into_iter()
            .enumerate()
        {
            let frame = Frame {
                ts_ns,
                wire_len: big.len() as u32,
                link: LinkType::Ethernet,
                data: &big,
            };
            judge.pass(i as u64 + 1, frame, &mut take);
            assert!(judge.held_bytes <= MAX_HELD_BYTES + big.len());
        }
        judge.finish(&mut take);
        assert_eq!(passed, 6);
        assert_eq!(judge.held_bytes, 0);
        assert!(judge.spare.iter().all(|b| b.capacity() <= SPARE_BYTES));
    }
}
