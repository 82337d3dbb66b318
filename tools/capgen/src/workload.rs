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
    /// Every gap between two frames times this: the same frames in the
    /// same order (the random draws do not depend on time), spread over
    /// that many times the duration, handshake times included.
    pub time_scale: u64,
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
    /// Who talks to whom ([`Route`]); empty: random clients and servers
    /// (`clients`, `servers`) on common service ports.
    pub routes: Vec<Route>,
}

/// One conversation of a described application (the demo's shop): its
/// connections go from one of `clients` to `server:port`, as often as
/// `weight` says among the routes, with handshake legs of `rtt_us`, and
/// `failing` ones (a server that is gone: refused or unanswered).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Addresses, or networks standing for every address in them (users
    /// on the internet, say), at most [`MAX_CLIENTS`] in all.
    #[serde(deserialize_with = "addresses")]
    pub clients: Vec<IpAddr>,
    pub server: IpAddr,
    pub port: u16,
    #[serde(default = "tcp")]
    pub proto: String,
    pub weight: u32,
    /// The SYN-ACK's delay after the SYN, microseconds: [least, most].
    #[serde(default = "lan_rtt")]
    pub rtt_us: [u64; 2],
    #[serde(default)]
    pub failing: bool,
}

/// Clients of one route, at most.
pub const MAX_CLIENTS: usize = 65_536;

fn addresses<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    use serde::de::Error;
    let mut out = Vec::new();
    for text in <Vec<String> as serde::Deserialize>::deserialize(d)? {
        let net: ipnetwork::IpNetwork = text.parse().map_err(D::Error::custom)?;
        out.extend(
            net.iter()
                .take(MAX_CLIENTS + 1 - out.len().min(MAX_CLIENTS)),
        );
        if out.len() > MAX_CLIENTS {
            return Err(D::Error::custom(format!(
                "more than {MAX_CLIENTS} clients in one route"
            )));
        }
    }
    Ok(out)
}

fn tcp() -> String {
    "tcp".into()
}

fn lan_rtt() -> [u64; 2] {
    [80, 900]
}

/// The routes of a TOML file: `[[route]]` tables.
pub fn routes_from_toml(text: &str) -> Result<Vec<Route>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        route: Vec<Route>,
    }
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    for r in &file.route {
        if r.clients.is_empty() || r.weight == 0 || !["tcp", "udp"].contains(&r.proto.as_str()) {
            return Err(format!(
                "route to {}:{}: clients, weight > 0, proto tcp or udp",
                r.server, r.port
            ));
        }
        if r.failing && r.proto != "tcp" {
            return Err(format!("route to {}:{}: only TCP fails", r.server, r.port));
        }
        if r.rtt_us[0] > r.rtt_us[1] {
            return Err(format!(
                "route to {}:{}: rtt_us is [least, most]",
                r.server, r.port
            ));
        }
    }
    Ok(file.route)
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
            time_scale: 1,
            anomalies: true,
            tunnels: false,
            snaplen: None,
            format: Format::default(),
            routes: Vec::new(),
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
    /// TCP: retransmissions, RSTs and zero-window segments the client sent,
    /// then the server.
    pub c2s_tcp: [u64; 3],
    pub s2c_tcp: [u64; 3],
    /// TCP connections established, refused, unanswered, reset, closed,
    /// open (flowtap's definitions, README).
    pub outcomes: [u64; 6],
}

/// Indices into [`FlowTruth::outcomes`].
pub mod outcome {
    pub const ESTABLISHED: usize = 0;
    pub const REFUSED: usize = 1;
    pub const UNANSWERED: usize = 2;
    pub const RESET: usize = 3;
    pub const CLOSED: usize = 4;
    pub const OPEN: usize = 5;
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
    /// The SYN answered by a RST: nothing listens.
    TcpRefused,
    /// Established, then ended by the server's RST.
    TcpReset,
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
    /// Initial sequence numbers: a retransmitted SYN repeats its own.
    isn: [u32; 2],
    /// The last data segment each side sent: (sequence, length).
    last_data: [Option<(u32, u16)>; 2],
    trouble: Trouble,
    /// Segments still to play (and the gap after each), then `Phase::Data`.
    script: std::collections::VecDeque<(Emit, u64)>,
    stage: Stage,
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
    /// The server's RST answering the SYN.
    Refuse,
    /// Scripted segments (a trouble) before the data goes on.
    Script,
}

/// A packet a script step emits.
#[derive(Clone, Copy, Debug)]
struct Emit {
    c2s: bool,
    flags: u8,
    payload: u16,
    /// A sequence number other than the next one (a retransmission, a
    /// keep-alive, a window probe): the sender's next one stays as it is.
    seq: Option<u32>,
    /// An acknowledgment number other than the other side's next one.
    ack: Option<u32>,
    window: u16,
    /// The truth counts it as a retransmission.
    retransmit: bool,
}

impl Emit {
    fn new(c2s: bool, flags: u8, payload: u16) -> Emit {
        Emit {
            c2s,
            flags,
            payload,
            seq: None,
            ack: None,
            window: 0xffff,
            retransmit: false,
        }
    }
}

/// A TCP trouble a connection runs into once, in the middle of its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    None,
    /// A data segment sent again after a retransmission timeout.
    TimeoutRetransmit,
    /// A data segment, three duplicate ACKs asking for it, and it again.
    FastRetransmit,
    /// Idle, then a keep-alive (one byte at the last sequence number).
    KeepAlive,
    /// The receiver's window closes; two window probes; it opens again.
    ZeroWindow,
}

/// Where a connection is, for the outcome the truth gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Start,
    SynSent,
    /// A SYN-ACK seen; `syn` when the SYN was seen too.
    SynAcked {
        syn: bool,
    },
    Open,
    Ended,
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
    pub fn new(mut spec: Spec) -> Generator {
        spec.time_scale = spec.time_scale.max(1);
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
        let scale = self.spec.time_scale;
        self.truth.first_ns = start;
        for i in 0..self.spec.concurrent {
            // Stagger the first connections over 100 ms.
            let t = start + scale * (i as u64 * 100 * MS) / self.spec.concurrent.max(1) as u64;
            self.open(t);
        }
        let mut written = 0u64;
        while written < self.spec.packets {
            let Some(Reverse((t, idx))) = self.heap.pop() else {
                self.open(self.truth.last_ns.max(start) + scale * MS);
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
                self.open(t + scale * pause);
            }
        }
        // Connections the capture cuts off: a handshake never completed was
        // unanswered; an established one is open.
        for c in &self.conns {
            let Some(flow) = c.flow else { continue };
            let outcomes = &mut self.truth.flows[flow].outcomes;
            match c.stage {
                Stage::SynSent | Stage::SynAcked { syn: true } => {
                    outcomes[outcome::UNANSWERED] += 1
                }
                Stage::SynAcked { syn: false } | Stage::Open => outcomes[outcome::OPEN] += 1,
                Stage::Start | Stage::Ended => {}
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

    /// A route by weight, if the spec has routes.
    fn pick_route(&mut self) -> Option<Route> {
        let total: u32 = self.spec.routes.iter().map(|r| r.weight).sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.rng.u32(0..total);
        for r in &self.spec.routes {
            if roll < r.weight {
                return Some(r.clone());
            }
            roll -= r.weight;
        }
        None
    }

    fn open(&mut self, t: u64) {
        let anomalies = self.spec.anomalies;
        let route = self.pick_route();
        let roll = self.rng.u32(0..100);
        let kind = match roll {
            _ if route.as_ref().is_some_and(|r| r.failing) => {
                [Kind::TcpRefused, Kind::TcpUnanswered][self.rng.usize(0..2)]
            }
            _ if route.as_ref().is_some_and(|r| r.proto == "udp") => Kind::Udp,
            0..3 if anomalies => Kind::TcpRefused,
            3..6 if anomalies => Kind::TcpReset,
            0..70 => Kind::Tcp,
            70..74 if anomalies => Kind::TcpSynRetransmit,
            74..77 if anomalies => Kind::TcpUnanswered,
            77..81 if anomalies => Kind::TcpMidStream,
            81..84 if anomalies => Kind::TcpFromSynAck,
            84..86 if anomalies => Kind::UdpFragmented,
            70..86 => Kind::Tcp,
            _ => Kind::Udp,
        };
        // A TCP route keeps the TCP kinds a capture of a healthy service
        // has (retransmitted SYNs, connections it joins mid-stream), not
        // UDP; failures belong to the failing routes only.
        let kind = match (&route, kind) {
            (Some(r), Kind::Udp | Kind::UdpFragmented) if r.proto == "tcp" => Kind::Tcp,
            (Some(r), Kind::TcpRefused | Kind::TcpReset | Kind::TcpUnanswered) if !r.failing => {
                Kind::Tcp
            }
            _ => kind,
        };
        let proto = match kind {
            Kind::Udp | Kind::UdpFragmented => Proto::Udp,
            _ => Proto::Tcp,
        };
        let v6 = kind != Kind::UdpFragmented && self.rng.u32(0..5) == 0 && route.is_none();
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
        let mut client = self.addr(v6, false, client_n);
        let mut server = self.addr(v6, true, server_n);
        if let Some(r) = &route {
            client = r.clients[self.rng.usize(0..r.clients.len())];
            server = r.server;
        }
        let sport = match proto {
            _ if route.is_some() => route.as_ref().map_or(0, |r| r.port),
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
            Kind::Tcp | Kind::TcpRefused | Kind::TcpReset => Phase::Syn(0),
            Kind::TcpSynRetransmit | Kind::TcpUnanswered => Phase::Syn(1),
            Kind::TcpMidStream => Phase::Data,
            Kind::TcpFromSynAck => Phase::SynAck,
            Kind::Udp => Phase::Datagrams,
            Kind::UdpFragmented => Phase::Fragments,
        };
        let seq = [self.rng.u32(..), self.rng.u32(..)];
        let trouble = match self.rng.u32(0..100) {
            _ if !anomalies
                || !matches!(kind, Kind::Tcp | Kind::TcpSynRetransmit | Kind::TcpReset) =>
            {
                Trouble::None
            }
            0..4 => Trouble::TimeoutRetransmit,
            4..8 => Trouble::FastRetransmit,
            8..10 => Trouble::KeepAlive,
            10..13 => Trouble::ZeroWindow,
            _ => Trouble::None,
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
            seq,
            isn: seq,
            last_data: [None, None],
            trouble,
            script: Default::default(),
            stage: Stage::Start,
            syn_gap_ns: [200 * MS, 1000 * MS][self.rng.usize(0..2)],
            // Handshake legs from 20 us to about 80 ms, log-spread, or as
            // the route says.
            synack_gap_ns: match &route {
                Some(r) => self.rng.u64(r.rtt_us[0]..=r.rtt_us[1]) * US,
                None => (20 * US) << self.rng.u32(0..12),
            },
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
            Kind::TcpMidStream => (Phase::LastAck, Emit::new(false, f::RST, 0)),
            Kind::TcpFromSynAck => (Phase::LastAck, Emit::new(true, f::RST | f::ACK, 0)),
            Kind::TcpReset => (Phase::LastAck, Emit::new(false, f::RST | f::ACK, 0)),
            _ => (Phase::FinServer, Emit::new(true, f::FIN | f::ACK, 0)),
        };
        // What to emit now, the next phase, and the gap until it (None: done).
        let (emit, next, gap) = match phase {
            Phase::Syn(retransmits) => {
                let mut syn = Emit::new(true, f::SYN, 0);
                // The SYNs after the first are retransmissions.
                syn.retransmit = retransmits == 0
                    && matches!(c.kind, Kind::TcpSynRetransmit | Kind::TcpUnanswered);
                match (retransmits, c.kind) {
                    (0, Kind::TcpUnanswered) => (syn, phase, None),
                    (0, Kind::TcpRefused) => (syn, Phase::Refuse, Some(c.synack_gap_ns)),
                    (0, _) => (syn, Phase::SynAck, Some(c.synack_gap_ns)),
                    (n, _) => (syn, Phase::Syn(n - 1), Some(c.syn_gap_ns)),
                }
            }
            Phase::SynAck => (
                Emit::new(false, f::SYN | f::ACK, 0),
                Phase::HandshakeAck,
                Some(c.ack_gap_ns),
            ),
            Phase::HandshakeAck => (Emit::new(true, f::ACK, 0), Phase::Data, Some(c.data_gap_ns)),
            Phase::Data if c.trouble != Trouble::None && c.data_left == 1 => {
                // Half way or so: the trouble, then the last data segment.
                let trouble = std::mem::replace(&mut c.trouble, Trouble::None);
                c.script = trouble_script(c, trouble, rng);
                let (e, gap) = c.script.pop_front().expect("a script has segments");
                (e, Phase::Script, Some(gap))
            }
            Phase::Script => {
                let (e, gap) = c.script.pop_front().expect("a script has segments");
                let next = if c.script.is_empty() {
                    Phase::Data
                } else {
                    Phase::Script
                };
                (e, next, Some(gap))
            }
            Phase::Data if c.data_left > 0 => {
                c.data_left -= 1;
                let e = Emit::new(rng.bool(), f::ACK | f::PSH, rng.u16(1..1400));
                (e, Phase::Data, Some(c.data_gap_ns))
            }
            Phase::Data => {
                let (next, e) = tcp_close(c);
                let gap = (next != Phase::LastAck).then_some(c.ack_gap_ns);
                (e, next, gap)
            }
            Phase::FinServer => (
                Emit::new(false, f::FIN | f::ACK, 0),
                Phase::LastAck,
                Some(c.ack_gap_ns),
            ),
            Phase::LastAck => (Emit::new(true, f::ACK, 0), phase, None),
            Phase::Datagrams => {
                // Alternate request and response; an even count ends on a response.
                let c2s = c.data_left.is_multiple_of(2);
                let more = c.data_left > 0;
                c.data_left = c.data_left.saturating_sub(1);
                (
                    Emit::new(c2s, 0, rng.u16(20..512)),
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
            Phase::Reply => (Emit::new(false, 0, 100), phase, None),
            Phase::Refuse => (Emit::new(false, f::RST | f::ACK, 0), phase, None),
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
                c2s_tcp: [0; 3],
                s2c_tcp: [0; 3],
                outcomes: [0; 6],
            });
            flows.len() - 1
        });
        self.truth.flows[flow].connections += 1;
        self.conns[idx].flow = Some(flow);
        flow
    }

    fn schedule(&mut self, idx: usize, t: u64, gap: Option<u64>) {
        match gap {
            Some(gap) => self
                .heap
                .push(Reverse((t + self.spec.time_scale * gap, idx))),
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
        let syn = e.flags & f::SYN != 0;
        let seq = match e.seq {
            // A SYN (first or again) carries the initial sequence number.
            _ if syn => c.isn[dir],
            Some(seq) => seq,
            None => c.seq[dir],
        };
        let seg = Segment {
            proto: c.proto,
            src,
            dst,
            sport,
            dport,
            flags: e.flags,
            seq,
            ack: e.ack.unwrap_or(c.seq[1 - dir]),
            payload: e.payload,
            vlans: &c.vlans[dir],
        };
        if syn {
            c.seq[dir] = c.isn[dir].wrapping_add(1);
        } else if e.seq.is_none() {
            c.seq[dir] =
                c.seq[dir].wrapping_add(u32::from(e.payload) + u32::from(e.flags & f::FIN != 0));
            if e.payload > 0 && c.proto == Proto::Tcp {
                c.last_data[dir] = Some((seq, e.payload));
            }
        }
        let mut headers = frame::segment_unsummed(&mut self.buf, &seg);
        if c.proto == Proto::Tcp && e.window != 0xffff {
            frame::set_tcp_window(&mut self.buf, headers, e.window);
        }
        // Payloads differ as real ones do (two copies of one packet are the
        // duplicates a SPAN session makes, not two packets).
        let stamp = self.truth.frames.to_le_bytes();
        let room = self.buf.len() - headers;
        self.buf[headers..headers + room.min(8)].copy_from_slice(&stamp[..room.min(8)]);
        // Summed once the window and the payload are final.
        frame::fill_l4_checksum(&mut self.buf, frame::ip_start(&seg));
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
        if c.proto == Proto::Tcp {
            let rst = e.flags & f::RST != 0;
            let health = if e.c2s {
                &mut flow.c2s_tcp
            } else {
                &mut flow.s2c_tcp
            };
            health[0] += u64::from(e.retransmit);
            health[1] += u64::from(rst);
            health[2] += u64::from(e.window == 0 && !rst);
            c.stage = next_stage(c, &e, &mut flow.outcomes);
        }
        // Legs are measured from the last SYN, for connections whose SYN was seen.
        let syn_seen = matches!(c.kind, Kind::Tcp | Kind::TcpSynRetransmit | Kind::TcpReset);
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

/// The segments of a trouble, each with the gap after it; `c` is in its
/// data phase, with its handshake done.
fn trouble_script(
    c: &Conn,
    trouble: Trouble,
    rng: &mut fastrand::Rng,
) -> std::collections::VecDeque<(Emit, u64)> {
    // The direction of the troubled data: client to server when `d`.
    let d = rng.bool();
    let sender = usize::from(!d);
    let data = |payload| Emit::new(d, f::ACK | f::PSH, payload);
    let ack = |window| Emit {
        window,
        ..Emit::new(!d, f::ACK, 0)
    };
    let mut script = std::collections::VecDeque::new();
    match trouble {
        Trouble::None => {}
        Trouble::TimeoutRetransmit => {
            // A segment, nothing for a retransmission timeout, it again. (Two
            // bytes at least: one byte sent again is a keep-alive's shape.)
            let len = rng.u16(2..1400);
            script.push_back((data(len), 200 * MS + rng.u64(0..300 * MS)));
            script.push_back((
                Emit {
                    seq: Some(c.seq[sender]),
                    retransmit: true,
                    ..data(len)
                },
                c.data_gap_ns,
            ));
        }
        Trouble::FastRetransmit => {
            // A segment, three duplicate ACKs asking for it, it again at once.
            let len = rng.u16(2..1400);
            script.push_back((data(len), 50 * US));
            for _ in 0..3 {
                script.push_back((
                    Emit {
                        ack: Some(c.seq[sender]),
                        ..ack(0xffff)
                    },
                    20 * US,
                ));
            }
            script.push_back((
                Emit {
                    seq: Some(c.seq[sender]),
                    retransmit: true,
                    ..data(len)
                },
                c.data_gap_ns,
            ));
        }
        Trouble::KeepAlive => {
            // Idle for a while, then one byte at the last sequence number
            // sent, and its ACK.
            script.push_back((
                Emit {
                    seq: Some(c.seq[sender].wrapping_sub(1)),
                    ..data(1)
                },
                100 * US,
            ));
            script.push_back((ack(0xffff), c.data_gap_ns));
        }
        Trouble::ZeroWindow => {
            // The receiver's window closes; the sender probes it twice with
            // its next byte (which stays next); the window opens.
            let probe = Emit {
                seq: Some(c.seq[sender]),
                ..data(1)
            };
            script.push_back((ack(0), 200 * MS));
            script.push_back((probe, 50 * US));
            script.push_back((ack(0), 400 * MS));
            script.push_back((probe, 50 * US));
            script.push_back((ack(0xffff), c.data_gap_ns));
        }
    }
    script
}

/// A connection's stage after it emits `e`, counting the outcome it settles.
fn next_stage(c: &Conn, e: &Emit, outcomes: &mut [u64; 6]) -> Stage {
    let rst = e.flags & f::RST != 0;
    let synack = e.flags & (f::SYN | f::ACK) == f::SYN | f::ACK;
    let mut count = |o: usize| outcomes[o] += 1;
    match (c.stage, e.c2s) {
        (Stage::Start, true) if e.flags == f::SYN => Stage::SynSent,
        (Stage::Start, false) if synack => Stage::SynAcked { syn: false },
        (Stage::Start, _) => {
            // Mid-stream: open before the capture started.
            if rst {
                count(outcome::RESET);
                Stage::Ended
            } else {
                Stage::Open
            }
        }
        (Stage::SynSent, false) if rst => {
            count(outcome::REFUSED);
            Stage::Ended
        }
        (Stage::SynSent, false) if synack => Stage::SynAcked { syn: true },
        (Stage::SynAcked { .. }, _) if rst => {
            count(outcome::RESET);
            Stage::Ended
        }
        (Stage::SynAcked { .. }, true) if e.flags == f::ACK => {
            count(outcome::ESTABLISHED);
            Stage::Open
        }
        (Stage::Open, _) if rst => {
            count(outcome::RESET);
            Stage::Ended
        }
        // The server's FIN follows the client's: both sides closed.
        (Stage::Open, false) if e.flags & f::FIN != 0 => {
            count(outcome::CLOSED);
            Stage::Ended
        }
        (stage, _) => stage,
    }
}
