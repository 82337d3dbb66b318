//! Frames of a capture file stamped far from the frames around them.
//!
//! A file's time is its frames' stamps: the flow table's clock is the
//! newest stamp seen, and rates, idle expiry and "last seen" are reckoned
//! from it. One frame stamped a year ahead (a bit flipped in a record's
//! seconds, a device whose clock was unset for a moment) moved that clock a
//! year on for the rest of the file: every rate read 0, every flow was idle
//! a year, and with an idle timeout every flow expired. A stamp far from
//! the one before it may also be the capture's own gap (a quiet link, two
//! captures joined end to end), and only the frame after it can tell the
//! two apart: so such a frame is held, and the next frame decides. Nearer
//! the held frame's stamp than the time before it, the capture jumped (or
//! runs sparse: a frame every quarter of an hour), and both are taken as
//! stamped; nearer the time before, the held frame alone was wrong, and it
//! is counted at that time (said, with its frame number, at the end of
//! the run).
//! Frames near each other pass at once, uncopied: only a jump copies one.

use super::Frame;
use crate::time::SECOND;
use crate::wire::dissect::LinkType;

/// How far a frame's stamp may be from the time the file is at before the
/// next frame has to confirm it: longer than any pause in a busy capture's
/// traffic, far shorter than the idle timeouts' harm of a clock moved on.
pub const STAMP_JUMP_NS: u64 = 10 * 60 * SECOND;

/// Frames of one file counted at another time than their stamps'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restamped {
    pub frames: u64,
    /// The first of them: its number in the file (from 1, as tshark and
    /// Wireshark number frames) and its stamp.
    pub first: Option<(u64, u64)>,
}

/// A frame held until the next one says whether its stamp stands.
#[derive(Debug)]
struct Held {
    number: u64,
    ts_ns: u64,
    wire_len: u32,
    link: LinkType,
    data: Vec<u8>,
}

/// One file's frames, passed on in order with their stamps judged.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    /// The time the file is at: the stamp of the last frame taken as
    /// stamped (none before the file's first frame, which is).
    at_ns: Option<u64>,
    held: Option<Held>,
    /// A held frame's buffer, kept for the next.
    spare: Vec<u8>,
    restamped: Restamped,
}

fn far(a: u64, b: u64) -> bool {
    a.abs_diff(b) > STAMP_JUMP_NS
}

impl Stamps {
    /// Passes on `frame`, the file's `number`th, or holds it until the
    /// next; passes on first a frame held before it.
    pub(super) fn pass(
        &mut self,
        number: u64,
        frame: Frame<'_>,
        on_frame: &mut impl FnMut(Frame<'_>),
    ) {
        if let Some(held) = self.held.take() {
            let at = self.at_ns.unwrap_or(held.ts_ns);
            let stands = frame.ts_ns.abs_diff(held.ts_ns) < frame.ts_ns.abs_diff(at);
            self.release(held, stands, on_frame);
        }
        match self.at_ns {
            Some(at) if far(frame.ts_ns, at) => {
                let mut data = std::mem::take(&mut self.spare);
                data.clear();
                data.extend_from_slice(frame.data);
                self.held = Some(Held {
                    number,
                    ts_ns: frame.ts_ns,
                    wire_len: frame.wire_len,
                    link: frame.link,
                    data,
                });
            }
            _ => {
                self.at_ns = Some(frame.ts_ns);
                on_frame(frame);
            }
        }
    }

    /// The end of the file: a frame still held has no frame after it to
    /// confirm its stamp, and is counted at the time before it. Returns
    /// the file's restamped frames, and starts afresh for the next file.
    pub(super) fn finish(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) -> Restamped {
        if let Some(held) = self.held.take() {
            self.release(held, false, on_frame);
        }
        self.at_ns = None;
        std::mem::take(&mut self.restamped)
    }

    fn release(&mut self, held: Held, stands: bool, on_frame: &mut impl FnMut(Frame<'_>)) {
        let ts_ns = match (stands, self.at_ns) {
            (false, Some(at)) => {
                self.restamped.frames += 1;
                self.restamped
                    .first
                    .get_or_insert((held.number, held.ts_ns));
                at
            }
            _ => {
                self.at_ns = Some(held.ts_ns);
                held.ts_ns
            }
        };
        on_frame(Frame {
            ts_ns,
            wire_len: held.wire_len,
            link: held.link,
            data: &held.data,
        });
        self.spare = held.data;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600 * SECOND;
    const YEAR: u64 = 365 * 86_400 * SECOND;

    /// Passes frames stamped `stamps` (each holding its index) through one
    /// file; returns the stamps passed on, in the order passed, by index.
    fn judged(stamps: &[u64]) -> (Vec<(u8, u64)>, Restamped) {
        let mut judge = Stamps::default();
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

    #[test]
    fn a_frame_stamped_far_from_both_neighbours_is_counted_at_the_time_before() {
        let (out, restamped) = judged(&[T, T + SECOND, T + YEAR, T + 2 * SECOND]);
        assert_eq!(
            out,
            [
                (0, T),
                (1, T + SECOND),
                (2, T + SECOND),
                (3, T + 2 * SECOND)
            ]
        );
        assert_eq!(
            restamped,
            Restamped {
                frames: 1,
                first: Some((3, T + YEAR))
            }
        );
        // Into the past alike (a clock unset: 1970).
        let (out, restamped) = judged(&[T, 5 * SECOND, T + SECOND]);
        assert_eq!(out, [(0, T), (1, T), (2, T + SECOND)]);
        assert_eq!(restamped.frames, 1);
    }

    #[test]
    fn a_gap_in_the_capture_is_confirmed_by_the_frame_after_it() {
        let hour = 3_600 * SECOND;
        let stamps = [T, T + hour, T + hour + SECOND, T + hour - SECOND];
        let (out, restamped) = judged(&stamps);
        let expected: Vec<(u8, u64)> = (0..).zip(stamps).collect();
        assert_eq!(out, expected);
        assert_eq!(restamped, Restamped::default());
        // A step back, as a clock set back by hand.
        let (out, _) = judged(&[T, T - hour, T - hour + 1]);
        assert_eq!(out, [(0, T), (1, T - hour), (2, T - hour + 1)]);
    }

    #[test]
    fn wrong_stamps_one_after_the_other_and_one_at_the_end_are_each_counted() {
        // Each nearer the time before than the wrong one before it.
        let (out, restamped) = judged(&[T, T + YEAR, T + 5, T - YEAR, T + 1, T + YEAR]);
        assert_eq!(
            out,
            [
                (0, T),
                (1, T),
                (2, T + 5),
                (3, T + 5),
                (4, T + 1),
                (5, T + 1)
            ]
        );
        assert_eq!(
            restamped,
            Restamped {
                frames: 3,
                first: Some((2, T + YEAR))
            }
        );
        // A sparse capture: every frame a quarter of an hour after the
        // last. Its last frame has none after it to confirm it.
        let quarter = 900 * SECOND;
        let stamps: Vec<u64> = (0..5).map(|i| T + i * quarter).collect();
        let (out, restamped) = judged(&stamps);
        let expected: Vec<(u8, u64)> = (0..).zip(stamps[..4].to_vec()).collect();
        assert_eq!(out[..4], expected);
        assert_eq!(out[4], (4, stamps[3]));
        assert_eq!(restamped.first, Some((5, stamps[4])));
        // A frame within the bound moves the time on: the clock follows a
        // capture whose frames are never far apart, however long it runs.
        let step = STAMP_JUMP_NS - 1;
        let (out, restamped) = judged(&[T, T + step, T + 2 * step, T + 3 * step]);
        assert_eq!(out.last(), Some(&(3, T + 3 * step)));
        assert_eq!(restamped.frames, 0);
    }
}
