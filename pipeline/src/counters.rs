//! What the ingest path counts: every frame lands in exactly one of the
//! transport, other-kind or malformed buckets, so nothing is lost silently.

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
    pub malformed: [u64; 5],
    /// Packets dropped because a shard's hand-off queue was full (live only;
    /// capture files wait instead).
    pub handoff_drops: u64,
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
    }
}
