//! A synthetic workload: many concurrent connections of several kinds,
//! interleaved in time, written as a capture, with the exact flows, handshake
//! times and frame counts a correct flow meter must report.
//!
//! Every connection follows a script; a heap of (next packet time,
//! connection) interleaves them, so handshake gaps are whatever the script
//! drew and the truth records them as emitted. Roles follow real practice
//! (servers on service ports, clients on ephemeral ports >= 32768), so the
//! truth's client is the real client, not the result of a rule.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::frame::{self, Malformed, NonFlow, Proto, Segment, tcp_flags as f};
use crate::pcap::{Format, LINKTYPE_ETHERNET, PcapWriter};
use crate::tunnel::{Carrier, Tunnel};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Frames to write in total.
    pub packets: u64,
    /// Connections open at any time.
    pub concurrent: usize,
    /// Mean data packets per connection (after the handshake).
    pub mean_data_packets: u32,
    pub clients: u32,
    pub servers: u32,
    pub seed: u64,
    /// First timestamp, ns since the epoch.
    pub start_ns: u64,
    /// Mix in anomalies: mid-stream and unanswered connections, SYN
    /// retransmits, VLAN/QinQ, fragments, snaplen-truncated frames,
    /// non-flow and malformed frames. Off: clean TCP/UDP only.
    pub anomalies: bool,
    /// Carry a fifth of the connections in tunnels and mirror sessions
    /// ([`crate::tunnel`]), outer VLAN tags included with anomalies.
    pub tunnels: bool,
    /// Store at most this many bytes of each frame (the wire length is kept).
    pub snaplen: Option<u32>,
    pub format: Format,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            packets: 100_000,
            concurrent: 1_000,
            mean_data_packets: 20,
            clients: 2_000,
            servers: 100,
            seed: 1,
            start_ns: 1_767_225_600 * 1_000_000_000, // 2026-01-01T00:00:00Z
            anomalies: true,
            tunnels: false,
            snaplen: None,
            format: Format::default(),
        }
    }
}

/// One flow as a correct meter reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FlowTruth {
    pub proto: &'static str,
    pub client: IpAddr,
    pub server: IpAddr,
    pub server_port: u16,
    pub c2s_pkts: u64,
    pub c2s_bytes: u64,
    pub s2c_pkts: u64,
    pub s2c_bytes: u64,
    pub connections: u64,
    /// SYN -> SYN-ACK of each measured connection, ns.
    pub client_legs_ns: Vec<u64>,
    /// SYN -> completing ACK, ns.
    pub server_legs_ns: Vec<u64>,
}

/// Everything the capture contains, as a correct meter counts it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    pub frames: u64,
    pub bytes: u64,
    /// Frames by kind (tcp, udp, icmp, arp, ip_other, non_ip).
    pub kinds: BTreeMap<&'static str, u64>,
    /// Malformed frames by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Frames by the encapsulation they were carried in, as flowtap names it.
    pub encapsulated: BTreeMap<&'static str, u64>,
    pub flows: Vec<FlowTruth>,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// SYN, SYN-ACK, ACK, data, FIN exchange.
    Tcp,
    /// As Tcp, with the SYN sent twice (the first lost).
    TcpSynRetransmit,
    /// SYN retransmitted, never answered.
    TcpUnanswered,
    /// The capture starts mid-connection: data only.
    TcpMidStream,
    /// The capture starts after the SYN: SYN-ACK first.
    TcpFromSynAck,
    /// Request/response datagrams.
    Udp,
    /// One large datagram in IPv4 fragments, then a reply.
    UdpFragmented,
}

struct Conn {
    kind: Kind,
    proto: Proto,
    client: IpAddr,
    server: IpAddr,
    cport: u16,
    sport: u16,
    /// VLAN stacks client->server and server->client (may differ).
    vlans: [Vec<u16>; 2],
    /// The tunnel or mirror session its frames are carried in.
    tunnel: Option<Tunnel>,
    phase: Phase,
    data_left: u32,
    seq: [u32; 2],
    syn_gap_ns: u64,
    synack_gap_ns: u64,
    ack_gap_ns: u64,
    data_gap_ns: u64,
    /// The truth flow, registered when the connection's first frame is written
    /// (a connection cut off by the end of the capture before it sent
    /// anything does not exist on the wire).
    flow: Option<usize>,
    last_syn_ns: u64,
    done: bool,
}

/// Where a connection's script is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Client SYN; the number of retransmissions still to come.
    Syn(u8),
    SynAck,
    /// The client's ACK that completes the handshake.
    HandshakeAck,
    Data,
    FinServer,
    LastAck,
    /// UDP request/response exchange.
    Datagrams,
    /// A large datagram in IPv4 fragments.
    Fragments,
    Reply,
}

/// A packet a script step emits.
struct Emit {
    c2s: bool,
    flags: u8,
    payload: u16,
}

pub struct Generator {
    spec: Spec,
    rng: fastrand::Rng,
    truth: Truth,
    flow_index: HashMap<(Proto, IpAddr, IpAddr, u16), usize>,
    next_port: HashMap<IpAddr, u16>,
    conns: Vec<Conn>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    buf: Vec<u8>,
    /// The frame in its tunnel.
    wrapped: Vec<u8>,
    ip_ident: u16,
}

const TCP_PORTS: [u16; 6] = [80, 443, 5432, 6379, 8080, 9092];
const UDP_PORTS: [u16; 3] = [53, 123, 5353];

impl Generator {
    pub fn new(spec: Spec) -> Generator {
        let rng = fastrand::Rng::with_seed(spec.seed);
        Generator {
            spec,
            rng,
            truth: Truth::default(),
            flow_index: HashMap::new(),
            next_port: HashMap::new(),
            conns: Vec::new(),
            heap: BinaryHeap::new(),
            buf: Vec::with_capacity(2048),
            wrapped: Vec::with_capacity(2048),
            ip_ident: 1,
        }
    }

    /// Writes the capture to `out` and returns its truth.
    pub fn write<W: Write>(mut self, out: W) -> io::Result<(Truth, W)> {
        let mut pcap = PcapWriter::with_format(out, LINKTYPE_ETHERNET, self.spec.format)?;
        if let Some(snaplen) = self.spec.snaplen {
            pcap.set_snaplen(snaplen);
        }
        let start = self.spec.start_ns;
        self.truth.first_ns = start;
        for i in 0..self.spec.concurrent {
            // Stagger the first connections over 100 ms.
            let t = start + (i as u64 * 100 * MS) / self.spec.concurrent.max(1) as u64;
            self.open(t);
        }
        let mut written = 0u64;
        while written < self.spec.packets {
            let Some(Reverse((t, idx))) = self.heap.pop() else {
                self.open(self.truth.last_ns.max(start) + MS);
                continue;
            };
            if self.spec.anomalies && self.rng.u32(0..500) == 0 {
                written += self.write_anomaly(&mut pcap, t)?;
                if written >= self.spec.packets {
                    break;
                }
            }
            written += self.step(&mut pcap, idx, t)?;
            if self.conns[idx].done {
                let pause = self.rng.u64(0..MS);
                self.open(t + pause);
            }
        }
        let out = pcap.finish()?;
        Ok((self.truth, out))
    }

    fn addr(&mut self, v6: bool, server: bool, n: u32) -> IpAddr {
        // Clients in 198.18.0.0/16, servers in 198.19.0.0/16 (the benchmarking
        // range); IPv6 in 2001:db8::/32.
        let [_, _, hi, lo] = n.to_be_bytes();
        if v6 {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            o[5] = u8::from(server);
            o[12..].copy_from_slice(&n.to_be_bytes());
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18 + u8::from(server), hi, lo))
        }
    }

    fn open(&mut self, t: u64) {
        let anomalies = self.spec.anomalies;
        let roll = self.rng.u32(0..100);
        let kind = match roll {
            0..70 => Kind::Tcp,
            70..74 if anomalies => Kind::TcpSynRetransmit,
            74..77 if anomalies => Kind::TcpUnanswered,
            77..81 if anomalies => Kind::TcpMidStream,
            81..84 if anomalies => Kind::TcpFromSynAck,
            84..86 if anomalies => Kind::UdpFragmented,
            70..86 => Kind::Tcp,
            _ => Kind::Udp,
        };
        let proto = match kind {
            Kind::Udp | Kind::UdpFragmented => Proto::Udp,
            _ => Proto::Tcp,
        };
        let v6 = kind != Kind::UdpFragmented && self.rng.u32(0..5) == 0;
        // Skewed choice: a few servers and clients carry most connections, and
        // a fifth of TCP connections come from a pool of busy clients to a
        // few database servers, so some flows gather many handshakes.
        let skew = |rng: &mut fastrand::Rng, n: u32| rng.u32(0..n).min(rng.u32(0..n));
        let pooled = proto == Proto::Tcp && self.rng.u32(0..5) == 0;
        let (client_n, server_n) = if pooled {
            (
                self.rng.u32(0..8.min(self.spec.clients.max(1))),
                self.rng.u32(0..4.min(self.spec.servers.max(1))),
            )
        } else {
            (
                skew(&mut self.rng, self.spec.clients.max(1)),
                skew(&mut self.rng, self.spec.servers.max(1)),
            )
        };
        let client = self.addr(v6, false, client_n);
        let server = self.addr(v6, true, server_n);
        let sport = match proto {
            Proto::Tcp if pooled => 5432,
            Proto::Tcp => TCP_PORTS[skew(&mut self.rng, TCP_PORTS.len() as u32) as usize],
            Proto::Udp => UDP_PORTS[self.rng.usize(0..UDP_PORTS.len())],
        };
        let next = self.next_port.entry(client).or_insert(32768);
        let cport = *next;
        *next = next
            .checked_add(1)
            .expect("client ports exhausted: raise --clients");
        let vlans = if anomalies {
            match self.rng.u32(0..10) {
                0 => [vec![10], vec![10]],
                1 => [vec![20, 30], vec![20, 30]],
                2 => [vec![40], Vec::new()],
                _ => [Vec::new(), Vec::new()],
            }
        } else {
            [Vec::new(), Vec::new()]
        };
        let tunnel = (self.spec.tunnels && kind != Kind::UdpFragmented && self.rng.u32(0..5) == 0)
            .then(|| self.tunnel(v6));
        let mean = self.spec.mean_data_packets.max(1);
        let data_left = self.rng.u32(0..=2 * mean);
        let phase = match kind {
            Kind::Tcp => Phase::Syn(0),
            Kind::TcpSynRetransmit | Kind::TcpUnanswered => Phase::Syn(1),
            Kind::TcpMidStream => Phase::Data,
            Kind::TcpFromSynAck => Phase::SynAck,
            Kind::Udp => Phase::Datagrams,
            Kind::UdpFragmented => Phase::Fragments,
        };
        let conn = Conn {
            kind,
            proto,
            client,
            server,
            cport,
            sport,
            vlans,
            tunnel,
            phase,
            data_left,
            seq: [self.rng.u32(..), self.rng.u32(..)],
            syn_gap_ns: [200 * MS, 1000 * MS][self.rng.usize(0..2)],
            // Handshake legs from 20 us to about 80 ms, log-spread.
            synack_gap_ns: (20 * US) << self.rng.u32(0..12),
            ack_gap_ns: self.rng.u64(5 * US..2 * MS),
            data_gap_ns: self.rng.u64(10 * US..20 * MS),
            flow: None,
            last_syn_ns: 0,
            done: false,
        };
        self.conns.push(conn);
        let idx = self.conns.len() - 1;
        self.heap.push(Reverse((t, idx)));
    }

    /// A tunnel for a connection whose addresses are IPv6 when `v6`: any
    /// carrier, over IPv4 mostly, IP-in-IP always across families (IPv6 in
    /// IPv4 and IPv4 in IPv6); outer VLAN tags now and then.
    fn tunnel(&mut self, v6: bool) -> Tunnel {
        let carrier = Carrier::SAMPLES[self.rng.usize(0..Carrier::SAMPLES.len())];
        let outer_v6 = match carrier {
            Carrier::IpInIp => !v6,
            _ => self.rng.u32(0..4) == 0,
        };
        let pair = self.rng.u8(1..4);
        let endpoints = if outer_v6 {
            let at = |n: u8| {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xff,
                    0,
                    0,
                    0,
                    u16::from(pair),
                    u16::from(n),
                ))
            };
            [at(1), at(2)]
        } else {
            [
                IpAddr::V4(Ipv4Addr::new(198, 18, 254, pair)),
                IpAddr::V4(Ipv4Addr::new(198, 19, 254, pair)),
            ]
        };
        let outer_vlans = match self.rng.u32(0..4) {
            0 if self.spec.anomalies => vec![300],
            1 if self.spec.anomalies => vec![400, 401],
            _ => Vec::new(),
        };
        Tunnel {
            carrier,
            endpoints,
            outer_vlans,
        }
    }

    /// Emits the connection's next packet at `t`; schedules the one after.
    fn step<W: Write>(&mut self, pcap: &mut PcapWriter<W>, idx: usize, t: u64) -> io::Result<u64> {
        let c = &mut self.conns[idx];
        let rng = &mut self.rng;
        let phase = c.phase;
        let tcp_close = |c: &Conn| match c.kind {
            // Connections that never had a SYN in the capture end abruptly.
            Kind::TcpMidStream => (
                Phase::LastAck,
                Emit {
                    c2s: false,
                    flags: f::RST,
                    payload: 0,
                },
            ),
            Kind::TcpFromSynAck => (
                Phase::LastAck,
                Emit {
                    c2s: true,
                    flags: f::RST | f::ACK,
                    payload: 0,
                },
            ),
            _ => (
                Phase::FinServer,
                Emit {
                    c2s: true,
                    flags: f::FIN | f::ACK,
                    payload: 0,
                },
            ),
        };
        // What to emit now, the next phase, and the gap until it (None: done).
        let (emit, next, gap) = match phase {
            Phase::Syn(retransmits) => {
                let syn = Emit {
                    c2s: true,
                    flags: f::SYN,
                    payload: 0,
                };
                match (retransmits, c.kind) {
                    (0, Kind::TcpUnanswered) => (syn, phase, None),
                    (0, _) => (syn, Phase::SynAck, Some(c.synack_gap_ns)),
                    (n, _) => (syn, Phase::Syn(n - 1), Some(c.syn_gap_ns)),
                }
            }
            Phase::SynAck => (
                Emit {
                    c2s: false,
                    flags: f::SYN | f::ACK,
                    payload: 0,
                },
                Phase::HandshakeAck,
                Some(c.ack_gap_ns),
            ),
            Phase::HandshakeAck => (
                Emit {
                    c2s: true,
                    flags: f::ACK,
                    payload: 0,
                },
                Phase::Data,
                Some(c.data_gap_ns),
            ),
            Phase::Data if c.data_left > 0 => {
                c.data_left -= 1;
                let e = Emit {
                    c2s: rng.bool(),
                    flags: f::ACK | f::PSH,
                    payload: rng.u16(1..1400),
                };
                (e, Phase::Data, Some(c.data_gap_ns))
            }
            Phase::Data => {
                let (next, e) = tcp_close(c);
                let gap = (next != Phase::LastAck).then_some(c.ack_gap_ns);
                (e, next, gap)
            }
            Phase::FinServer => (
                Emit {
                    c2s: false,
                    flags: f::FIN | f::ACK,
                    payload: 0,
                },
                Phase::LastAck,
                Some(c.ack_gap_ns),
            ),
            Phase::LastAck => (
                Emit {
                    c2s: true,
                    flags: f::ACK,
                    payload: 0,
                },
                phase,
                None,
            ),
            Phase::Datagrams => {
                // Alternate request and response; an even count ends on a response.
                let c2s = c.data_left.is_multiple_of(2);
                let more = c.data_left > 0;
                c.data_left = c.data_left.saturating_sub(1);
                (
                    Emit {
                        c2s,
                        flags: 0,
                        payload: rng.u16(20..512),
                    },
                    phase,
                    more.then_some(c.data_gap_ns),
                )
            }
            Phase::Fragments => {
                let gap = c.synack_gap_ns;
                c.phase = Phase::Reply;
                let n = self.emit_fragments(pcap, idx, t)?;
                self.schedule(idx, t, Some(gap));
                return Ok(n);
            }
            Phase::Reply => (
                Emit {
                    c2s: false,
                    flags: 0,
                    payload: 100,
                },
                phase,
                None,
            ),
        };
        self.conns[idx].phase = next;
        self.emit(pcap, idx, t, emit, phase)?;
        self.schedule(idx, t, gap);
        Ok(1)
    }

    /// The truth flow of connection `idx`, created with its first frame.
    fn flow_of(&mut self, idx: usize) -> usize {
        if let Some(flow) = self.conns[idx].flow {
            return flow;
        }
        let c = &self.conns[idx];
        let key = (c.proto, c.client, c.server, c.sport);
        let proto = match c.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let flows = &mut self.truth.flows;
        let flow = *self.flow_index.entry(key).or_insert_with(|| {
            flows.push(FlowTruth {
                proto,
                client: key.1,
                server: key.2,
                server_port: key.3,
                c2s_pkts: 0,
                c2s_bytes: 0,
                s2c_pkts: 0,
                s2c_bytes: 0,
                connections: 0,
                client_legs_ns: Vec::new(),
                server_legs_ns: Vec::new(),
            });
            flows.len() - 1
        });
        self.truth.flows[flow].connections += 1;
        self.conns[idx].flow = Some(flow);
        flow
    }

    fn schedule(&mut self, idx: usize, t: u64, gap: Option<u64>) {
        match gap {
            Some(gap) => self.heap.push(Reverse((t + gap, idx))),
            None => self.conns[idx].done = true,
        }
    }

    fn emit<W: Write>(
        &mut self,
        pcap: &mut PcapWriter<W>,
        idx: usize,
        t: u64,
        e: Emit,
        phase: Phase,
    ) -> io::Result<()> {
        let c = &mut self.conns[idx];
        let dir = usize::from(!e.c2s);
        let (src, dst, sport, dport) = if e.c2s {
            (c.client, c.server, c.cport, c.sport)
        } else {
            (c.server, c.client, c.sport, c.cport)
        };
        let seg = Segment {
            proto: c.proto,
            src,
            dst,
            sport,
            dport,
            flags: e.flags,
            seq: c.seq[dir],
            ack: c.seq[1 - dir],
            payload: e.payload,
            vlans: &c.vlans[dir],
        };
        c.seq[dir] = c.seq[dir]
            .wrapping_add(u32::from(e.payload) + u32::from(e.flags & (f::SYN | f::FIN) != 0));
        if e.flags == f::SYN {
            // A retransmission keeps the original sequence number.
            c.seq[dir] = seg.seq;
        }
        let mut headers = frame::segment(&mut self.buf, &seg);
        // Payloads differ as real ones do (two copies of one packet are the
        // duplicates a SPAN session makes, not two packets).
        let stamp = self.truth.frames.to_le_bytes();
        let room = self.buf.len() - headers;
        self.buf[headers..headers + room.min(8)].copy_from_slice(&stamp[..room.min(8)]);
        let mut counted = self.buf.len() as u64;
        let frame = match &c.tunnel {
            Some(tunnel) => {
                let (bytes, in_front) = tunnel.wrap(&self.buf, e.c2s, &mut self.wrapped);
                counted = bytes as u64;
                headers += in_front;
                *self
                    .truth
                    .encapsulated
                    .entry(tunnel.carrier.encap_name())
                    .or_default() += 1;
                &self.wrapped
            }
            None => &self.buf,
        };
        let wire_len = frame.len() as u32;
        // Now and then the capture cuts a frame after its headers (snaplen).
        let caplen = if self.spec.anomalies && e.payload > 64 && self.rng.u32(0..20) == 0 {
            headers + 16
        } else {
            frame.len()
        };
        pcap.write(t, &frame[..caplen], wire_len)?;

        let flow = self.flow_of(idx);
        let c = &mut self.conns[idx];
        let flow = &mut self.truth.flows[flow];
        if e.c2s {
            flow.c2s_pkts += 1;
            flow.c2s_bytes += counted;
        } else {
            flow.s2c_pkts += 1;
            flow.s2c_bytes += counted;
        }
        // Legs are measured from the last SYN, for connections whose SYN was seen.
        let syn_seen = matches!(c.kind, Kind::Tcp | Kind::TcpSynRetransmit);
        match phase {
            Phase::Syn(_) => c.last_syn_ns = t,
            Phase::SynAck if syn_seen => flow.client_legs_ns.push(t - c.last_syn_ns),
            Phase::HandshakeAck if syn_seen => flow.server_legs_ns.push(t - c.last_syn_ns),
            _ => {}
        }
        let kind = match c.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        self.count_frame(t, wire_len, kind);
        Ok(())
    }

    fn emit_fragments<W: Write>(
        &mut self,
        pcap: &mut PcapWriter<W>,
        idx: usize,
        t: u64,
    ) -> io::Result<u64> {
        let c = &self.conns[idx];
        let seg = Segment {
            proto: Proto::Udp,
            src: c.client,
            dst: c.server,
            sport: c.cport,
            dport: c.sport,
            flags: 0,
            seq: 0,
            ack: 0,
            payload: 2992,
            vlans: &c.vlans[0],
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let frames = frame::udp_fragments(&seg, 1480, self.ip_ident);
        let flow = self.flow_of(idx);
        let n = frames.len() as u64;
        for (i, fr) in frames.iter().enumerate() {
            // Fragments leave back to back, 1 us apart.
            let ts = t + i as u64 * US;
            pcap.write(ts, fr, fr.len() as u32)?;
            let flow = &mut self.truth.flows[flow];
            flow.c2s_pkts += 1;
            flow.c2s_bytes += fr.len() as u64;
            self.count_frame(ts, fr.len() as u32, "udp");
        }
        Ok(n)
    }

    fn write_anomaly<W: Write>(&mut self, pcap: &mut PcapWriter<W>, t: u64) -> io::Result<u64> {
        if self.rng.bool() {
            let what = NonFlow::ALL[self.rng.usize(0..NonFlow::ALL.len())];
            frame::non_flow(&mut self.buf, what);
            self.count_frame(t, self.buf.len() as u32, what.kind());
        } else {
            let what = Malformed::ALL[self.rng.usize(0..Malformed::ALL.len())];
            frame::malformed(&mut self.buf, what);
            self.truth.frames += 1;
            self.truth.bytes += self.buf.len() as u64;
            self.truth.last_ns = self.truth.last_ns.max(t);
            *self.truth.malformed.entry(what.reason()).or_default() += 1;
        }
        pcap.write(t, &self.buf, self.buf.len() as u32)?;
        Ok(1)
    }

    fn count_frame(&mut self, t: u64, wire_len: u32, kind: &'static str) {
        self.truth.frames += 1;
        self.truth.bytes += u64::from(wire_len);
        self.truth.last_ns = self.truth.last_ns.max(t);
        *self.truth.kinds.entry(kind).or_default() += 1;
    }
}
