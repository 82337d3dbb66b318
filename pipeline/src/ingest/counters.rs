//! What the ingest path counts: every frame lands in exactly one of the
//! kind or malformed buckets, so nothing is lost silently; duplicates, and
//! those `--dedup` dropped, are counted again apart (found where a packet's
//! connection is counted, after its kind was counted where it was read), as
//! are packets a full hand-off dropped.

use crate::wire::decap::Encap;
use crate::wire::dissect::{MalformedReason, OtherKind};

/// Frame kinds, in the order of [`IngestCounters::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Tcp,
    Udp,
    Icmp,
    Arp,
    IpOther,
    NonIp,
}

impl FrameKind {
    pub const ALL: [FrameKind; 6] = [
        FrameKind::Tcp,
        FrameKind::Udp,
        FrameKind::Icmp,
        FrameKind::Arp,
        FrameKind::IpOther,
        FrameKind::NonIp,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            FrameKind::Tcp => "tcp",
            FrameKind::Udp => "udp",
            FrameKind::Icmp => "icmp",
            FrameKind::Arp => "arp",
            FrameKind::IpOther => "ip_other",
            FrameKind::NonIp => "non_ip",
        }
    }
}

impl From<OtherKind> for FrameKind {
    fn from(k: OtherKind) -> Self {
        match k {
            OtherKind::Arp => FrameKind::Arp,
            OtherKind::Icmp => FrameKind::Icmp,
            OtherKind::IpOther => FrameKind::IpOther,
            OtherKind::NonIp => FrameKind::NonIp,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestCounters {
    pub frames: u64,
    /// Wire bytes of all frames.
    pub bytes: u64,
    /// Parsed frames by [`FrameKind`].
    pub kinds: [u64; 6],
    /// Malformed frames by [`MalformedReason`].
    pub malformed: [u64; MalformedReason::ALL.len()],
    /// Packets dropped because a shard's hand-off queue was full (live only;
    /// capture files wait instead).
    pub handoff_drops: u64,
    /// Frames by the outermost encapsulation they arrived in ([`Encap`]).
    pub encap_frames: [u64; Encap::ALL.len()],
    /// Wire bytes of those frames.
    pub encap_bytes: [u64; Encap::ALL.len()],
    /// Frames that repeated one seen within the duplicate window (counted
    /// by the worker that found them: the one counting their connection).
    pub duplicates: u64,
    /// Of those, dropped (`--dedup`); otherwise counted like any frame.
    pub duplicates_dropped: u64,
    /// First fragments of tunnelled datagrams not remembered: the ingest
    /// path's fragment table was full.
    pub tunnel_fragment_table_full: u64,
    /// Slots of each duplicate table (a gauge: the bound, not a count).
    pub duplicate_slots: u64,
}

impl IngestCounters {
    #[inline]
    pub fn count_kind(&mut self, kind: FrameKind) {
        self.kinds[kind as usize] += 1;
    }

    #[inline]
    pub fn count_malformed(&mut self, reason: MalformedReason) {
        self.malformed[reason.index()] += 1;
    }

    #[inline]
    pub fn count_encap(&mut self, encap: Encap, wire_len: u32) {
        self.encap_frames[encap.index()] += 1;
        self.encap_bytes[encap.index()] += u64::from(wire_len);
    }

    pub fn kind(&self, kind: FrameKind) -> u64 {
        self.kinds[kind as usize]
    }

    pub fn malformed(&self, reason: MalformedReason) -> u64 {
        self.malformed[reason.index()]
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    pub fn add(&mut self, o: &IngestCounters) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        for (a, b) in self.kinds.iter_mut().zip(o.kinds) {
            *a += b;
        }
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
        self.handoff_drops += o.handoff_drops;
        for (a, b) in self.encap_frames.iter_mut().zip(o.encap_frames) {
            *a += b;
        }
        for (a, b) in self.encap_bytes.iter_mut().zip(o.encap_bytes) {
            *a += b;
        }
        self.duplicates += o.duplicates;
        self.duplicates_dropped += o.duplicates_dropped;
        self.tunnel_fragment_table_full += o.tunnel_fragment_table_full;
        // Each table's slots: the workers' tables are alike.
        self.duplicate_slots = self.duplicate_slots.max(o.duplicate_slots);
    }
}
