//! The first step of a packet's path, on the thread that reads its source:
//! a frame becomes the packet its shard counts ([`PacketMeta`]) or is
//! counted by kind. Here the dissector runs with the configured
//! encapsulations; the counting rule for mirror encapsulations is applied
//! (a frame inside VXLAN, GENEVE or GRE with Ethernet, or ERSPAN counts as
//! the mirrored frame: its own bytes, not the outer headers'); a packet is
//! keyed for its copies, which the worker that counts its connection finds
//! ([`Ingest::drops_copy`], [`duplicates`] says why there) and, with
//! `--dedup`, drops;
//! mirror sessions are counted ([`sessions`]); and the later fragments of a
//! fragmented tunnel datagram, which carry no inner headers, find the inner
//! flow their first fragment was counted in.

pub mod counters;
pub mod duplicates;
pub mod sessions;

pub use counters::{FrameKind, IngestCounters};
pub use duplicates::{CopyPart, DedupConfig};
pub use sessions::{MirrorSessions, SessionCount};

use crate::flow::fragments::Fragments;
use crate::packet::{Fragment, L4Proto, PacketMeta, Transport};
use crate::source::Frame;
use crate::time::SECOND;
use crate::wire::decap::{Decap, Encap, Mirror};
use crate::wire::dissect::{Carried, Dissected, Dissector};
pub use duplicates::Duplicates;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    pub decap: Decap,
    pub dedup: DedupConfig,
    /// Mirror sessions counted apart, per worker (`--max-mirror-sessions`).
    pub max_mirror_sessions: usize,
    /// First fragments of tunnelled datagrams remembered, per worker (the
    /// flow table's `--max-fragments`).
    pub max_tunnel_fragments: usize,
    pub fragment_timeout_ns: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            decap: Decap::DEFAULT,
            dedup: DedupConfig::default(),
            max_mirror_sessions: 256,
            max_tunnel_fragments: 4096,
            fragment_timeout_ns: 30 * SECOND,
        }
    }
}

/// What the first fragment of a tunnelled datagram leaves for the later
/// ones: the inner flow, and whether it was mirrored (whose later fragments
/// add bytes to the frame already counted).
#[derive(Clone, Copy, Debug)]
struct InnerFlow {
    transport: Transport,
    encap: Option<Encap>,
    mirror: Option<Mirror>,
    /// The first fragment's key for copies: the later ones' are made of it.
    copy_key: u64,
}

pub struct Ingest {
    dissector: Dissector,
    /// How the current frame was carried (kept, not returned, per frame).
    carried: Carried,
    pub counters: IngestCounters,
    pub sessions: MirrorSessions,
    duplicates: Duplicates,
    drop_duplicates: bool,
    tunnel_fragments: Fragments<InnerFlow>,
}

impl Ingest {
    /// An ingest step whose fragment table hashes with `hasher` and whose
    /// duplicate table keys with `dedup_hasher` (the same for every worker
    /// of a pipeline: a key made where a frame is read is looked up where
    /// its connection is counted).
    pub fn new(
        config: &IngestConfig,
        hasher: ahash::RandomState,
        dedup_hasher: ahash::RandomState,
    ) -> Ingest {
        let duplicates = Duplicates::new(&config.dedup, dedup_hasher);
        Ingest {
            dissector: Dissector::new(config.decap),
            carried: Carried::default(),
            counters: IngestCounters {
                duplicate_slots: duplicates.slots() as u64,
                ..IngestCounters::default()
            },
            sessions: MirrorSessions::new(config.max_mirror_sessions),
            duplicates,
            drop_duplicates: config.dedup.drop,
            tunnel_fragments: Fragments::new(
                config.max_tunnel_fragments,
                config.fragment_timeout_ns,
                hasher,
            ),
        }
    }

    /// Reads one frame: the packet to count (keyed for its copies, which
    /// the worker that counts it looks for: [`Ingest::drops_copy`]), or
    /// `None` when it was counted here (by kind, or as malformed).
    #[inline]
    pub fn frame(&mut self, frame: Frame<'_>) -> Option<PacketMeta> {
        self.counters.frames += 1;
        self.counters.bytes += u64::from(frame.wire_len);
        let result = self
            .dissector
            .dissect_into(frame.link, frame.data, &mut self.carried);
        let carried = &self.carried;
        // A mirror session that cuts its copies short (AWS Traffic
        // Mirroring's packet length, ERSPAN's truncation) delivers the start
        // of a frame: its length from the innermost IP header on is what
        // that header says, as a frame a snap length cut counts its length
        // on the wire. (Not where a datagram was fragmented: its later
        // fragments add the rest.)
        let cut_copy_ip_len = match &result {
            Ok(Dissected::Transport(t))
                if carried.mirror.is_some() && carried.fragment.is_none() =>
            {
                Some(t.ip_len)
            }
            _ => None,
        };
        // Every frame a tunnel or mirror session delivered, copies dropped
        // below included: the counters say which sessions deliver.
        if let Some(encap) = carried.encap {
            self.counters.count_encap(encap, frame.wire_len);
        }
        if let Some(mirror) = carried.mirror {
            self.sessions.count(mirror, frame.wire_len, frame.ts_ns);
        }
        let copy_key = match carried.ip_offset {
            Some(at) if self.duplicates.compares() => {
                let captured = frame.data.get(at as usize..).unwrap_or_default();
                // Copies of a packet are compared as the IP packet its
                // header says: a SPAN copy padded to 60 bytes or followed
                // by a packet broker's trailer and a tunnel's unpadded copy
                // are one packet, and so are a whole copy and one cut short
                // or carried in fragments. Without a length in the header,
                // the frame's.
                let (packet, len) = match carried.ip_len {
                    Some(len) => (&captured[..captured.len().min(len as usize)], len),
                    None => (
                        captured,
                        frame
                            .wire_len
                            .saturating_sub(at)
                            .max(cut_copy_ip_len.unwrap_or(0)),
                    ),
                };
                self.duplicates.key(packet, len)
            }
            _ => 0,
        };
        // A cut copy is as long as its link header and its IP header's length.
        let cut_copy_len = cut_copy_ip_len
            .zip(carried.ip_offset)
            .map(|(ip_len, at)| at.saturating_sub(carried.outer_len).saturating_add(ip_len));
        let mut meta = PacketMeta {
            ts_ns: frame.ts_ns,
            wire_len: frame
                .wire_len
                .saturating_sub(carried.outer_len)
                .saturating_sub(carried.trailer_len)
                .max(cut_copy_len.unwrap_or(0)),
            counts_packet: true,
            duplicate: false,
            copy_key,
            copy_part: CopyPart::WHOLE,
            refusal: false,
            mirror: carried.mirror,
            transport: match result {
                Ok(Dissected::Transport(t)) => t,
                Ok(Dissected::Refusal(quoted)) => {
                    // An ICMP frame, which also tells its connection.
                    self.counters.count_kind(FrameKind::Icmp);
                    let segment = Transport {
                        tcp_seq: quoted.seq,
                        ..Transport::new(
                            L4Proto::Tcp,
                            (quoted.src, quoted.src_port),
                            (quoted.dst, quoted.dst_port),
                            0,
                        )
                    };
                    return Some(PacketMeta {
                        counts_packet: false,
                        refusal: true,
                        copy_key,
                        mirror: carried.mirror,
                        ..PacketMeta::new(frame.ts_ns, 0, segment)
                    });
                }
                Ok(Dissected::Other(kind)) => {
                    if let Some(later) = self.later_fragment(*carried, &frame) {
                        return Some(later);
                    }
                    // Its copies are looked for here, as it goes to no
                    // connection's worker (so copies read by two workers
                    // are not found).
                    self.counters.count_kind(kind.into());
                    self.copy_seen(copy_key, CopyPart::WHOLE, frame.ts_ns);
                    return None;
                }
                Err(malformed) => {
                    self.counters.count_malformed(malformed.reason);
                    return None;
                }
            },
        };
        if let Some(fragment) = carried.fragment {
            match fragment.later {
                None => {
                    self.remember_first_fragment(*carried, meta.transport, frame.ts_ns, copy_key);
                    meta.copy_part = CopyPart::FIRST;
                }
                Some(_) => {
                    if let Some(later) = self.later_fragment(*carried, &frame) {
                        return Some(later);
                    }
                }
            }
        }
        self.count_transport(&meta.transport);
        Some(meta)
    }

    /// A later fragment of a tunnelled datagram whose first fragment was
    /// seen (`carried` says how this frame was carried): a packet of the
    /// inner flow. Where the mirror's own datagram was fragmented (its
    /// headers are not in this frame) it adds its share of the mirrored
    /// frame's bytes to the packet already counted; a tunnel that carries
    /// IP, fragmented on the wire captured or on a mirrored one (the
    /// mirror's headers in this frame, counted with it), is a packet of its
    /// own, counted as that wire's frame.
    fn later_fragment(&mut self, carried: Carried, frame: &Frame<'_>) -> Option<PacketMeta> {
        let (fragment, last) = carried.fragment.and_then(|f| Some((f, f.later?)))?;
        let inner = self
            .tunnel_fragments
            .later(&fragment.id, last, frame.ts_ns)?;
        let mut transport = inner.transport;
        transport.fragment = Fragment::Continued;
        transport.tcp_flags = 0;
        transport.payload_len = fragment.payload_len;
        // Its share of the packet inside, as IP bytes (the first fragment
        // counted the share it carried).
        transport.ip_len = fragment.payload_len;
        self.count_carrier(&inner, carried, frame);
        self.count_transport(&transport);
        let carrier_fragment = inner.mirror.is_some() && carried.mirror.is_none();
        // Its copies carry the same part of the same packet (its first
        // fragment's key), whatever headers the carrier's copies have.
        let copy_part = match carried.ip_offset {
            Some(at) if inner.copy_key != 0 => {
                let captured = frame.data.get(at as usize..).unwrap_or_default();
                let ip_len = carried.ip_len.map_or(captured.len(), |l| l as usize);
                let starts = ip_len.saturating_sub(fragment.payload_len as usize);
                let payload = captured
                    .get(starts..ip_len.min(captured.len()))
                    .unwrap_or_default();
                self.duplicates
                    .later_part(fragment.offset, payload, fragment.payload_len)
            }
            _ => CopyPart::WHOLE,
        };
        Some(PacketMeta {
            ts_ns: frame.ts_ns,
            wire_len: if carrier_fragment {
                fragment.payload_len
            } else {
                frame
                    .wire_len
                    .saturating_sub(carried.outer_len)
                    .saturating_sub(carried.trailer_len)
            },
            counts_packet: !carrier_fragment,
            duplicate: false,
            copy_key: inner.copy_key,
            copy_part,
            refusal: false,
            mirror: inner.mirror,
            transport,
        })
    }

    /// Counts a later fragment of a tunnelled datagram in the encapsulation
    /// and mirror session its first fragment came through (`inner`), where
    /// its own headers do not show them (they were counted with it).
    fn count_carrier(&mut self, inner: &InnerFlow, carried: Carried, frame: &Frame<'_>) {
        if let Some(encap) = inner.encap.filter(|_| carried.encap.is_none()) {
            self.counters.count_encap(encap, frame.wire_len);
        }
        if let Some(mirror) = inner.mirror.filter(|_| carried.mirror.is_none()) {
            self.sessions.count(mirror, frame.wire_len, frame.ts_ns);
        }
    }

    /// Remembers the first fragment of a tunnelled datagram (`carried`
    /// says which; `copy_key` its key for copies) for its later fragments:
    /// the inner flow they belong to.
    fn remember_first_fragment(
        &mut self,
        carried: Carried,
        transport: Transport,
        ts_ns: u64,
        copy_key: u64,
    ) {
        let Some(fragment) = carried.fragment.filter(|f| f.later.is_none()) else {
            return;
        };
        let inner = InnerFlow {
            transport,
            encap: carried.encap,
            mirror: carried.mirror,
            copy_key,
        };
        if self
            .tunnel_fragments
            .first(fragment.id, inner, ts_ns)
            .lost_one()
        {
            self.counters.tunnel_fragment_table_full += 1;
        }
    }

    /// Whether `meta` is a copy of a packet counted within the window that
    /// `--dedup` drops: called where its connection is counted, on the
    /// worker that owns it (`pipeline::engine`), so its copies read by
    /// other workers meet it there. A copy kept is marked a duplicate.
    #[inline]
    pub fn drops_copy(&mut self, meta: &mut PacketMeta) -> bool {
        if !self.copy_seen(meta.copy_key, meta.copy_part, meta.ts_ns) {
            return false;
        }
        meta.duplicate = true;
        self.drop_duplicates
    }

    /// Whether `part` of the packet keyed `copy_key` (0: not compared)
    /// repeats one seen within the window, counted as a duplicate, and as
    /// dropped if `--dedup` drops it.
    #[inline]
    fn copy_seen(&mut self, copy_key: u64, part: CopyPart, ts_ns: u64) -> bool {
        if copy_key == 0 || !self.duplicates.seen(copy_key, part, ts_ns) {
            return false;
        }
        self.counters.duplicates += 1;
        if self.drop_duplicates {
            self.counters.duplicates_dropped += 1;
        }
        true
    }

    fn count_transport(&mut self, t: &Transport) {
        self.counters.count_kind(match t.proto {
            L4Proto::Tcp => FrameKind::Tcp,
            L4Proto::Udp => FrameKind::Udp,
        });
    }

    /// Forgets first fragments past the fragment timeout.
    pub fn expire(&mut self, now_ns: u64) {
        self.tunnel_fragments.expire(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Addr;
    use crate::wire::dissect::LinkType;

    /// An ingest step with the default configuration and a fixed hasher.
    fn fresh() -> Ingest {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        Ingest::new(&IngestConfig::default(), hasher.clone(), hasher)
    }

    /// One Ethernet frame through a fresh ingest step.
    fn ingest_one(data: &[u8]) -> (Ingest, Option<PacketMeta>) {
        let mut ingest = fresh();
        let frame = Frame {
            ts_ns: 5,
            wire_len: data.len() as u32,
            link: LinkType::Ethernet,
            data,
        };
        let meta = ingest.frame(frame);
        (ingest, meta)
    }

    /// An ICMPv4 port unreachable from 198.19.0.2, quoting the SYN that
    /// 198.18.0.1:40000 sent to it on port 443 with sequence number 7.
    fn port_unreachable() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(0x0800u16.to_be_bytes());
        f.extend([
            0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 198, 19, 0, 2, 198, 18, 0, 1,
        ]);
        f.extend([3, 3, 0, 0, 0, 0, 0, 0]);
        f.extend([
            0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 19, 0, 2,
        ]);
        f.extend(40000u16.to_be_bytes());
        f.extend(443u16.to_be_bytes());
        f.extend(7u32.to_be_bytes());
        f
    }

    /// The refusal reaches the table as the quoted segment, sent by its
    /// client, counting nothing; the frame counts as ICMP, once.
    #[test]
    fn an_icmp_refusal_is_the_quoted_segment_counting_nothing() {
        let (ingest, meta) = ingest_one(&port_unreachable());
        let meta = meta.expect("a refusal");
        assert!(meta.refusal && !meta.counts_packet);
        let t = meta.transport;
        assert_eq!(t.proto, L4Proto::Tcp);
        assert_eq!((t.src, t.src_port), (Addr::from_v4([198, 18, 0, 1]), 40000));
        assert_eq!((t.dst, t.dst_port), (Addr::from_v4([198, 19, 0, 2]), 443));
        assert_eq!(t.tcp_seq, 7);
        assert_eq!(ingest.counters.kinds.iter().sum::<u64>(), 1);
        assert_eq!(ingest.counters.kinds[FrameKind::Icmp as usize], 1);
    }

    /// An Ethernet frame holding an IPv4 header of `protocol` (total length
    /// `total`, fragment word `fragment`) from 198.18.0.1 to 198.19.0.2,
    /// then `rest`.
    fn ipv4_frame(protocol: u8, total: u16, fragment: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(0x0800u16.to_be_bytes());
        f.extend([0x45, 0, 0, 0, 0, 0x77, 0, 0, 64, protocol, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20..22].copy_from_slice(&fragment.to_be_bytes());
        f.extend([198, 18, 0, 1, 198, 19, 0, 2]);
        f.extend(rest);
        f
    }

    /// An IPv4 packet from 198.18.0.1:40000 to 198.19.0.2:443, an ACK with
    /// 1460 bytes of data: 1500 bytes.
    fn segment() -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        tcp.resize(1480, 0xab);
        ipv4_frame(6, 1500, 0, &tcp)[14..].to_vec()
    }

    /// `inner` (an Ethernet frame) as VXLAN session `vni` delivers it.
    fn vxlan(vni: u8, inner: &[u8]) -> Vec<u8> {
        let udp_len = (8 + 8 + inner.len()) as u16;
        let mut udp = Vec::new();
        udp.extend(50000u16.to_be_bytes());
        udp.extend(4789u16.to_be_bytes());
        udp.extend(udp_len.to_be_bytes());
        udp.extend([0, 0, 0x08, 0, 0, 0, 0, 0, vni, 0]);
        udp.extend(inner);
        let mut f = ipv4_frame(17, 20 + udp_len, 0x4000, &udp);
        f[26..34].copy_from_slice(&[198, 18, 9, 1, 198, 18, 9, 2]);
        f
    }

    /// A VXLAN mirror session's copy of a 1514-byte frame, cut to its first
    /// `kept` bytes (AWS Traffic Mirroring's packet length).
    fn mirror_copy(vni: u8, kept: usize) -> Vec<u8> {
        let mut inner = vec![0u8; 12];
        inner.extend(0x0800u16.to_be_bytes());
        inner.extend(segment());
        vxlan(vni, &inner[..kept])
    }

    /// A mirror's truncated copy counts the frame's length by its IP
    /// header (it counted the 100 bytes the mirror kept).
    #[test]
    fn a_truncated_mirror_copy_counts_the_frames_length() {
        let meta = ingest_one(&mirror_copy(7, 100)).1.expect("a packet");
        assert!(meta.mirror.is_some());
        assert_eq!(
            (meta.transport.src_port, meta.transport.dst_port),
            (40000, 443)
        );
        assert_eq!(meta.transport.ip_len, 1500);
        assert_eq!(meta.wire_len, 1514);
    }

    /// Copies of one packet through two sessions, one of them cut, are
    /// duplicates: the cut one is as long (it was compared at the length
    /// the mirror kept).
    #[test]
    fn a_cut_copy_of_a_packet_is_its_duplicate() {
        let mut ingest = fresh();
        let mut duplicates = Vec::new();
        for (ts_ns, data) in [(0, mirror_copy(100, 1514)), (30_000, mirror_copy(200, 128))] {
            let frame = Frame {
                ts_ns,
                wire_len: data.len() as u32,
                link: LinkType::Ethernet,
                data: &data,
            };
            let mut meta = ingest.frame(frame).expect("a packet");
            assert_eq!(meta.wire_len, 1514);
            assert!(!ingest.drops_copy(&mut meta), "kept without --dedup");
            duplicates.push(meta.duplicate);
        }
        assert_eq!(duplicates, [false, true]);
    }

    /// [`segment`] in IP-in-IP, the datagram in two fragments (1480 bytes
    /// of it, then 20), each an Ethernet frame.
    fn fragments_of_a_tunnelled_segment() -> [Vec<u8>; 2] {
        let tunnelled = segment();
        [
            ipv4_frame(4, 1500, 0x2000, &tunnelled[..1480]),
            ipv4_frame(4, 20 + 20, 1480 / 8, &tunnelled[1480..]),
        ]
    }

    /// An IP-in-IP datagram fragmented on the wire captured: its fragments
    /// are packets of the flow inside, each its share of that packet's IP
    /// bytes (not the whole packet's length, nor its own frame's).
    #[test]
    fn a_fragmented_tunnel_counts_the_packet_inside_once() {
        let mut ingest = fresh();
        let [first, second] = fragments_of_a_tunnelled_segment();
        let counted: Vec<(u32, u32, u16)> = [(0, first), (1_000, second)]
            .iter()
            .map(|(ts_ns, data)| {
                let frame = Frame {
                    ts_ns: *ts_ns,
                    wire_len: data.len() as u32,
                    link: LinkType::Ethernet,
                    data,
                };
                let m = ingest.frame(frame).expect("a packet");
                (
                    m.wire_len,
                    m.transport.ip_len.min(m.wire_len),
                    m.transport.dst_port,
                )
            })
            .collect();
        assert_eq!(counted, [(1514, 1480, 443), (54, 20, 443)]);
    }

    /// An IP-in-IP datagram in four fragments whose second and third
    /// carry the same bytes (the segment's data, a repeated byte): two
    /// parts of one packet, not a copy of one part.
    #[test]
    fn two_parts_of_a_packet_alike_are_no_copies() {
        let mut ingest = fresh();
        let tunnelled = segment();
        let mut ip_bytes = 0;
        for (at, end) in [(0, 480), (480, 960), (960, 1440), (1440, 1500)] {
            let more = if end < 1500 { 0x2000 } else { 0 };
            let data = ipv4_frame(
                4,
                20 + (end - at) as u16,
                more | (at / 8) as u16,
                &tunnelled[at..end],
            );
            let frame = Frame {
                ts_ns: 1_000 + at as u64,
                wire_len: data.len() as u32,
                link: LinkType::Ethernet,
                data: &data,
            };
            let mut meta = ingest.frame(frame).expect("a packet");
            assert!(!ingest.drops_copy(&mut meta));
            assert!(!meta.duplicate, "the part at {at}");
            ip_bytes += meta.transport.ip_len.min(meta.wire_len);
        }
        assert_eq!(ip_bytes, 1500);
        assert_eq!(ingest.counters.duplicates, 0);
    }

    /// An IP-in-IP datagram fragmented on a mirrored wire: each fragment a
    /// packet of that wire, counted as its frame, and each frame counted
    /// once by encapsulation and session (the second was one packet, only
    /// its IP payload's bytes, and counted twice in both).
    #[test]
    fn a_tunnel_fragmented_inside_a_mirror_is_a_packet_a_fragment() {
        let mut ingest = fresh();
        let [first, second] = fragments_of_a_tunnelled_segment();
        let mut metas = Vec::new();
        for (ts_ns, inner) in [(0, first), (1_000, second)] {
            let data = vxlan(9, &inner);
            let frame = Frame {
                ts_ns,
                wire_len: data.len() as u32,
                link: LinkType::Ethernet,
                data: &data,
            };
            metas.push(ingest.frame(frame).expect("a packet"));
        }
        let counted: Vec<(bool, u32, u16)> = metas
            .iter()
            .map(|m| (m.counts_packet, m.wire_len, m.transport.dst_port))
            .collect();
        assert_eq!(counted, [(true, 1514, 443), (true, 54, 443)]);
        // IP bytes: the 1500-byte packet inside, each fragment its share.
        let ip_bytes: Vec<u32> = metas
            .iter()
            .map(|m| m.transport.ip_len.min(m.wire_len))
            .collect();
        assert_eq!(ip_bytes, [1480, 20]);
        assert_eq!(ingest.counters.encap_frames[Encap::Vxlan.index()], 2);
        let sessions = ingest.sessions.sorted();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].frames.pkts, 2);
    }
}
