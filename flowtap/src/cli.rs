//! Command-line options. Every option is also an environment variable
//! (`FLOWTAP_` and its name) and a key of the `--config` TOML file (its long
//! name); see [`crate::config`] for the precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use api::access::AccessConfig;
use api::mcp::McpLimits;
use api::server::ServerConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hub::client::AgentUrl;
use ipnetwork::IpNetwork;
use pipeline::source::live::{FRAME_SIZES, Mode, Unbound, XdpAttach};
use pipeline::wire::decap::{Decap, Tunnel};

use crate::serve::Listen;

/// `--mcp-max-request-bytes-held` when not given (or the request bound, if
/// larger).
const DEFAULT_MCP_REQUEST_BYTES_HELD: u64 = 16 << 20;

/// Where the API listens when `--listen` is given without an address (and,
/// live, by default).
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8898";
/// A running flowtap as `top` and `mcp-stdio` reach it by default: at
/// [`DEFAULT_LISTEN`].
const DEFAULT_URL: &str = "http://127.0.0.1:8898";
/// Where `/healthz`, `/readyz` and `/metrics` are served by default.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8899";

pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FLOWTAP_GIT_COMMIT"),
    ")"
);
pub(crate) const COMMIT: &str = env!("FLOWTAP_GIT_COMMIT");

const SOURCE: &str = "Source";
pub(crate) const LIVE: &str = "Live capture";
const API: &str = "API server";
const K8S: &str = "Kubernetes";
const FLOWS: &str = "Flows";
const MIRROR: &str = "Mirror sessions and tunnels";
const HUB: &str = "Hub";
const EXPORT: &str = "Export";
const LOGS: &str = "Logging and configuration";

/// flowtap: L4 flows (who talks to whom, how much, how healthy) from a mirror
/// port or capture files, served as Kubeshark-compatible MCP L4 endpoints.
#[derive(Parser, Debug)]
#[command(name = "flowtap", version = VERSION, about, long_about = None)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Exit 0 if a running flowtap answers /healthz (for container health checks).
    Healthcheck {
        /// The running flowtap's admin listener, as it was given
        /// (`--admin-listen`, or its variable).
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_LISTEN, env = "FLOWTAP_ADMIN_LISTEN")]
        admin_listen: String,
        /// Or the URL to ask, e.g. http://127.0.0.1:8899 (`/healthz` when it
        /// names no path).
        #[arg(long)]
        url: Option<String>,
    },
    /// Serve MCP over stdio for clients that launch a local process,
    /// forwarding every message to a running flowtap's /mcp.
    McpStdio {
        /// The running flowtap, e.g. http://127.0.0.1:8898.
        #[arg(long, env = "FLOWTAP_URL", default_value = DEFAULT_URL)]
        url: String,
        /// File holding the bearer token the running flowtap was given.
        #[arg(long, value_name = "FILE", env = "FLOWTAP_AUTH_TOKEN_FILE")]
        auth_token_file: Option<PathBuf>,
    },
    /// Serve the merged flows of every agent (flowtap instances serving a
    /// data listener): one answer for the whole cluster.
    // The shared API options said as the hub has them: it serves until
    // stopped, and its answers are JSON already (--json is refused).
    #[command(
        mut_arg("listen", |a| a.help("Serve the merged API on ADDR (default 127.0.0.1:8898) until SIGINT, SIGTERM or SIGHUP; with --dump, only if given")),
        mut_arg("json", |a| a.hide(true))
    )]
    Hub(Box<HubArgs>),
    /// Show the heaviest flows of a running flowtap (or hub) in the
    /// terminal, refreshed until q; one table when stdout is not a terminal.
    Top(TopArgs),
    /// Print a reference generated from the program itself, as Markdown.
    Docs {
        #[arg(value_enum)]
        what: Docs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Docs {
    /// Every option with its environment variable, config key and default.
    Config,
    /// Every metric of /metrics.
    Metrics,
}

#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["read", "interface"]))]
pub(crate) struct RunArgs {
    /// Read packets from capture files (pcap or pcapng, plain or compressed with gzip or zstd; - for standard input), in order, as one stream. Several follow one -r (or -r is repeated); a name is taken whole, commas included.
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1.., env = "FLOWTAP_READ", help_heading = SOURCE)]
    pub read: Vec<PathBuf>,

    /// Capture live on this interface with XDP and AF_XDP (needs root, or
    /// CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK). Repeatable (or
    /// comma-separated): several interfaces are captured as one stream, as
    /// the two monitor ports of a passive TAP (one direction each) must be.
    /// `default-route` names the interface of the host's default route (a
    /// node's uplink, whatever its name).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", env = "FLOWTAP_INTERFACE", value_delimiter = ',', help_heading = SOURCE)]
    pub interface: Vec<String>,

    /// span: the interface is a dedicated mirror port and its frames are
    /// consumed. host: the node's own interface; its traffic is mirrored to a
    /// veth pair flowtap creates and flows on untouched.
    #[arg(long, value_enum, default_value_t = Mode::Span, env = "FLOWTAP_MODE", help_heading = LIVE)]
    pub mode: Mode,

    /// XDP attach mode: auto tries driver mode and falls back to skb
    /// (generic); on an interface built on others (a bond, an Azure NIC
    /// with accelerated networking, a macvlan) it takes skb mode, which sees
    /// their frames.
    #[arg(long, value_enum, default_value_t = XdpAttach::Auto, env = "FLOWTAP_XDP_MODE", help_heading = LIVE)]
    pub xdp_mode: XdpAttach,

    /// What XDP does with frames of rx queues flowtap has no socket on.
    #[arg(long, value_enum, default_value_t = Unbound::Pass, env = "FLOWTAP_UNBOUND", help_heading = LIVE)]
    pub unbound: Unbound,

    /// Rx queues to capture (default: all of the interface's).
    #[arg(long, value_name = "N", env = "FLOWTAP_QUEUES", help_heading = LIVE)]
    pub queues: Option<u32>,

    /// Cores to pin workers to, e.g. 0,2,4 (default: the CPUs this process
    /// may run on, as many workers as its CPU quota grants, such as a pod's
    /// limits.cpu, pinned only where the quota covers them all: a pod with
    /// whole CPUs of its own). Queue i's
    /// worker runs on the i-th core; the HTTP threads avoid these cores when
    /// others are left.
    #[arg(long, value_name = "LIST", value_delimiter = ',', env = "FLOWTAP_CORES", help_heading = LIVE)]
    pub cores: Vec<usize>,

    /// Leave the interface's promiscuous mode as it is. By default a span
    /// interface is made promiscuous while flowtap runs (a packet-socket
    /// membership, which the kernel drops when flowtap exits, even killed):
    /// a mirror port's frames carry other hosts' MACs, which a NIC not in
    /// promiscuous mode drops before XDP sees them. Host mode needs none.
    #[arg(long, env = "FLOWTAP_NO_PROMISCUOUS", help_heading = LIVE)]
    pub no_promiscuous: bool,

    /// Receive every frame in one AF_XDP buffer, as kernels before 6.6 do,
    /// instead of a longer frame in several where the kernel can: for a
    /// driver whose multi-buffer support misbehaves. A frame longer than a
    /// buffer (see --frame-size) is then dropped by the kernel and counted
    /// (flowtap_xdp_rx_dropped_total).
    #[arg(long, env = "FLOWTAP_NO_MULTI_BUFFER", help_heading = LIVE)]
    pub no_multi_buffer: bool,

    /// Spin on the rings instead of sleeping when idle (lowest latency, one
    /// full core per queue).
    #[arg(long, env = "FLOWTAP_BUSY_POLL", help_heading = LIVE)]
    pub busy_poll: bool,

    /// Frames per AF_XDP socket (one per rx queue), a power of two: the
    /// size of its fill and rx rings, so how long a worker may fall behind
    /// before the kernel drops (8192 frames is 9 ms at 900 kpps). Each frame
    /// is --frame-size bytes of locked memory (flowtap_xdp_ring_entries).
    /// Default: 16 MiB of frames (8192 of 2 KiB, 4096 of 4 KiB).
    #[arg(long, value_name = "N", value_parser = parse_ring_frames, env = "FLOWTAP_RING_FRAMES", help_heading = LIVE)]
    pub ring_frames: Option<u32>,

    /// Bytes per AF_XDP buffer, 2048 or 4096: a buffer receives a frame of
    /// up to 272 bytes less (the kernel's headroom and the XDP program's
    /// timestamp; flowtap_xdp_max_frame_bytes); a longer one takes several
    /// (multi-buffer, Linux 6.6 on) or, where the kernel cannot, is dropped
    /// (rx_dropped). Default: 2048 where the capture interface's MTU is 1754
    /// or less (a frame of that MTU with two VLAN tags fits), else 4096.
    #[arg(long, value_name = "BYTES", value_parser = parse_frame_size, env = "FLOWTAP_FRAME_SIZE", help_heading = LIVE)]
    pub frame_size: Option<u32>,

    /// Worker threads (shards) for files, 1 to 256 (each holds a share of
    /// the tables and hand-off queues). Default: the number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256), env = "FLOWTAP_THREADS", help_heading = FLOWS)]
    pub threads: Option<usize>,

    /// Packets each worker's hand-off queue holds (rounded up to batches of
    /// 32; about 100 bytes each), from the workers that parse frames for
    /// its shard. Live, a full queue drops packets
    /// (flowtap_handoff_drops_total); reading files, the reader waits.
    /// Every worker's queue is allocated at start, out of --memory-limit.
    #[arg(long, value_name = "PACKETS", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(32..=16_777_216), env = "FLOWTAP_HANDOFF_QUEUE", help_heading = FLOWS)]
    pub handoff_queue: u64,

    /// Seconds between published snapshots (live).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_seconds_from::<50>, env = "FLOWTAP_SNAPSHOT_INTERVAL", help_heading = FLOWS)]
    pub snapshot_interval: f64,

    /// Seconds without a new snapshot after which live capture is stuck (a
    /// worker that no longer answers): flowtap then fails readiness and
    /// exits with status 1, saying so, for its supervisor to restart it,
    /// rather than serve its last snapshot as if the traffic had stopped.
    /// At least three snapshot intervals; 0: never.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds, env = "FLOWTAP_STALL_TIMEOUT", help_heading = FLOWS)]
    pub stall_timeout: f64,

    /// Handshake-time window in seconds for percentiles. Default: 120 live,
    /// the whole capture for files.
    #[arg(long, value_name = "SECONDS", env = "FLOWTAP_RTT_WINDOW", help_heading = FLOWS)]
    pub rtt_window: Option<u32>,

    /// Window in seconds over which pps/bps are averaged.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "FLOWTAP_RATE_WINDOW", help_heading = FLOWS)]
    pub rate_window: u64,

    /// Drop TCP connections (and flows) idle this long. Default: 300 live,
    /// never for files.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..), env = "FLOWTAP_TCP_TIMEOUT", help_heading = FLOWS)]
    pub tcp_timeout: Option<u64>,

    /// A TCP handshake not completed this long after its SYN is given up:
    /// the connection counts as unanswered. Default: 30 live, never for
    /// files (a handshake the file ends before completing is unanswered).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..), env = "FLOWTAP_TCP_SYN_TIMEOUT", help_heading = FLOWS)]
    pub tcp_syn_timeout: Option<u64>,

    /// Send flow records over IPFIX to a collector, udp://HOST:PORT or
    /// tcp://HOST:PORT (repeatable, or comma-separated), e.g. nfcapd or
    /// pmacct's nfacctd.
    #[arg(long, value_name = "URL", value_delimiter = ',', value_parser = parse_collector_url, env = "FLOWTAP_IPFIX_COLLECTOR", help_heading = EXPORT)]
    pub ipfix_collector: Vec<String>,

    /// IPFIX observation domain id in every message.
    #[arg(long, value_name = "N", default_value_t = 0, env = "FLOWTAP_IPFIX_DOMAIN", help_heading = EXPORT)]
    pub ipfix_domain: u32,

    /// One IPFIX record a flow carrying both directions (RFC 5103 biflow:
    /// the server's counts in the reverse elements), rather than one a
    /// direction. Off by default: not every collector reads reverse
    /// elements (README says which do).
    #[arg(long, env = "FLOWTAP_IPFIX_BIFLOW", help_heading = EXPORT)]
    pub ipfix_biflow: bool,

    /// What an IPFIX record describes: a flow (a client's connections to a
    /// server port; client port 0) or a connection (its 5-tuple and TCP
    /// flags; the capture workers then keep each connection's counts, about
    /// 390 bytes a connection more, taken from --memory-limit's share for
    /// connections).
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = IpfixPer::Flow, env = "FLOWTAP_IPFIX_PER", help_heading = EXPORT)]
    pub ipfix_per: IpfixPer,

    /// Records waiting for the exporter at most, all workers together:
    /// connection records (--ipfix-per connection), or the last records of
    /// flows that left the table, expired or evicted (--ipfix-per flow; a
    /// tenth of the memory for the tables at most); more are dropped, and
    /// counted.
    #[arg(long, value_name = "N", default_value_t = 262_144, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_IPFIX_MAX_PENDING_RECORDS", help_heading = EXPORT)]
    pub ipfix_max_pending_records: usize,

    /// Enterprise number of flowtap's own IPFIX elements (TCP health,
    /// handshake percentiles, connection outcomes; README lists them). The
    /// default, 32473, is IANA's number for documentation: set your own
    /// (not 0, reserved, nor 29305, RFC 5103's for reverse elements).
    #[arg(long, value_name = "N", default_value_t = ipfix::message::DEFAULT_ENTERPRISE, value_parser = parse_enterprise_number, env = "FLOWTAP_IPFIX_ENTERPRISE_NUMBER", help_heading = EXPORT)]
    pub ipfix_enterprise_number: u32,

    /// A running flow gets an IPFIX record of its counts since the last one
    /// this often (capture time; at the snapshot nearest it, a hundredth of
    /// it early at most); a flow that ends gets its last
    /// at the next snapshot. From -r, running flows' records come from the
    /// snapshots taken while reading (with --listen, one a second of
    /// reading; else none before the end: a long capture read in seconds
    /// gets one a direction for all of a flow that lasts to its end, and
    /// ended flows' records come a second at a time); --ipfix-per
    /// connection splits records by this timeout in capture time there too.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), env = "FLOWTAP_IPFIX_ACTIVE_TIMEOUT", help_heading = EXPORT)]
    pub ipfix_active_timeout: u64,

    /// Largest IPFIX message in bytes: within the path MTU to the collector
    /// (no IP fragmentation over UDP), at most 65507.
    #[arg(long, value_name = "BYTES", default_value_t = 1400, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=ipfix::message::MAX_MESSAGE_LEN as u64), env = "FLOWTAP_IPFIX_MTU", help_heading = EXPORT)]
    pub ipfix_mtu: usize,

    /// Bytes of IPFIX messages kept for a tcp:// collector that is away (it
    /// is tried again after 1 s, then 2, 4 and 8 s while it stays away);
    /// what does not fit is lost, and counted.
    #[arg(long, value_name = "SIZE", default_value = "8Mi", value_parser = parse_size, env = "FLOWTAP_IPFIX_TCP_BUFFER", help_heading = EXPORT)]
    pub ipfix_tcp_buffer: u64,

    /// Seconds after which udp:// collectors get the templates again (with
    /// the batch of messages nearest it, a hundredth of it early at most;
    /// and after 1000 messages, counted between batches, so a batch's more
    /// at most), so that one that restarted can read the records (RFC 7011
    /// section 8.4).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds, env = "FLOWTAP_IPFIX_TEMPLATE_REFRESH", help_heading = EXPORT)]
    pub ipfix_template_refresh: f64,

    /// Drop UDP connections (and flows) idle this long. Default: 60 live,
    /// never for files.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..), env = "FLOWTAP_UDP_TIMEOUT", help_heading = FLOWS)]
    pub udp_timeout: Option<u64>,

    /// Memory flowtap may use (e.g. 512Mi, 2Gi, 1G; Ki/Mi/Gi are powers of
    /// 1024, k/M/G of 1000). The table limits are derived from it, less
    /// 128 MiB, the capture buffers and the hand-off queues (a limit below
    /// what those take at start is refused). Default: half the memory of the machine, or
    /// of its container.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, env = "FLOWTAP_MEMORY_LIMIT", help_heading = FLOWS)]
    pub memory_limit: Option<u64>,

    /// Connections tracked at most (default: from --memory-limit). A full
    /// table gives up unanswered connections not seen for a second, then
    /// idle ones, then unanswered ones of any age, then the least recently
    /// seen; packets of connections it cannot track still count.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_MAX_CONNECTIONS", help_heading = FLOWS)]
    pub max_connections: Option<usize>,

    /// Flows kept at most (default: from --memory-limit). A full table gives
    /// up unanswered flows; what it cannot count is counted in /metrics.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_MAX_FLOWS", help_heading = FLOWS)]
    pub max_flows: Option<usize>,

    /// First fragments remembered at once, so later fragments find their
    /// flow (per worker, for the flow tables and for tunnels).
    #[arg(long, value_name = "N", default_value_t = 8192, env = "FLOWTAP_MAX_FRAGMENTS", help_heading = FLOWS)]
    pub max_fragments: usize,

    /// Encapsulations not to open, e.g. `vxlan,gre`: vxlan, geneve, gtpu,
    /// gre, erspan, tzsp. Their frames then count as the outer UDP flow (GRE
    /// and ERSPAN, IP protocol 47 and no flow, as ip_other). IP-in-IP is
    /// always opened.
    #[arg(long, value_name = "LIST", value_delimiter = ',', env = "FLOWTAP_NO_DECAP", help_heading = MIRROR)]
    pub no_decap: Vec<Tunnel>,

    /// UDP destination ports of an encapsulation, replacing its defaults
    /// (vxlan=4789,8472 geneve=6081 gtpu=2152 tzsp=37008), e.g.
    /// `vxlan=4789,4790`. A port two encapsulations would be opened on is
    /// refused. Repeat for each; in the environment, separate them with `;`.
    #[arg(long, value_name = "NAME=PORTS", value_delimiter = ';', value_parser = Decap::parse_ports, env = "FLOWTAP_DECAP_PORTS", help_heading = MIRROR)]
    pub decap_ports: Vec<(Tunnel, Vec<u16>)>,

    /// Drop exact duplicates (the same bytes from the innermost IP header on, within
    /// --dedup-window-us), as a SPAN session mirroring both the client's and
    /// the server's switch port delivers them, on one port or two. They are
    /// detected, counted (flowtap_duplicate_frames_total) and kept out of TCP
    /// health either way.
    #[arg(long, env = "FLOWTAP_DEDUP", help_heading = MIRROR)]
    pub dedup: bool,

    /// How far apart, in microseconds, two copies of a packet may arrive to
    /// be duplicates (0: do not look for duplicates; at most 65535). A
    /// cloud mirror of both ends of conversations delivers them as far
    /// apart as the two hosts are: 2000 there, with --dedup-slots 65536.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=65_535), env = "FLOWTAP_DEDUP_WINDOW_US", help_heading = MIRROR)]
    pub dedup_window_us: u64,

    /// Slots of each worker's duplicate table, in buckets of four (8 bytes
    /// each; 1 to 16777216, rounded up to a power of two and at least 4). A
    /// copy is missed where four newer packets fall in its bucket before it
    /// comes; more slots miss fewer but cost cache misses on every packet.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16_777_216), env = "FLOWTAP_DEDUP_SLOTS", help_heading = MIRROR)]
    pub dedup_slots: usize,

    /// Mirror sessions (encapsulation and VNI, ERSPAN session or GRE key)
    /// counted apart per worker; at the bound a new session takes the place
    /// of one that delivered nothing for 10 minutes, else its frames are
    /// counted with the other sessions beyond it.
    #[arg(long, value_name = "N", default_value_t = 256, env = "FLOWTAP_MAX_MIRROR_SESSIONS", help_heading = MIRROR)]
    pub max_mirror_sessions: usize,

    /// This flowtap's name in coverage and in its hub's answers: the node
    /// it runs on (in Kubernetes, give it `spec.nodeName`). Default: the
    /// host name.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name, env = "FLOWTAP_NODE_NAME", help_heading = API)]
    pub node_name: Option<String>,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub names: NamesArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Fixed hash seed, for reproducible shard placement (testing).
    #[arg(long, value_name = "N", hide = true, env = "FLOWTAP_HASH_SEED")]
    pub hash_seed: Option<u64>,
}

/// `flowtap hub`: where the agents are and how they are pulled, and the
/// same server, Kubernetes and logging options as `flowtap`.
#[derive(Args, Debug, Clone)]
pub(crate) struct HubArgs {
    /// An agent's data listener, e.g. http://10.0.0.5:8898 (repeatable, or
    /// comma-separated).
    #[arg(long = "agent", value_name = "URL", value_delimiter = ',', value_parser = parse_agent_url, env = "FLOWTAP_HUB_AGENTS", help_heading = HUB)]
    pub agents: Vec<String>,

    /// A DNS name that resolves to every agent, with their port (e.g. a
    /// headless Service: flowtap-agents.monitoring.svc:8898); resolved again
    /// every interval, keeping the last addresses while it does not
    /// resolve. Repeatable.
    #[arg(long, value_name = "NAME:PORT", value_delimiter = ',', value_parser = parse_agents_dns, env = "FLOWTAP_HUB_AGENTS_DNS", help_heading = HUB)]
    pub agents_dns: Vec<String>,

    /// The agents' Service, NAMESPACE/NAME[:PORT]: its EndpointSlice
    /// addresses, followed as they change; the ready ones are pulled, the
    /// others named missing (needs --k8s-watch, or an inventory with the
    /// EndpointSlices). PORT is the agents' own port as the slices list it
    /// (the Service's targetPort, not its port), by number or name; without
    /// one, the slices' port named http, else their only port, else 8898.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_agents_service, env = "FLOWTAP_HUB_AGENTS_SERVICE", help_heading = HUB)]
    pub agents_service: Option<String>,

    /// File holding the bearer token the agents require.
    #[arg(long, value_name = "FILE", env = "FLOWTAP_AGENT_TOKEN_FILE", help_heading = HUB)]
    pub agent_token_file: Option<PathBuf>,

    /// Seconds between pulls of every agent (each round of pulls makes a
    /// snapshot).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_seconds_from::<50>, env = "FLOWTAP_SNAPSHOT_INTERVAL", help_heading = HUB)]
    pub snapshot_interval: f64,

    /// Seconds one agent gets to answer a pull; one that does not is
    /// missing from that snapshot (and named in its coverage).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_seconds_from::<10>, env = "FLOWTAP_HUB_AGENT_TIMEOUT", help_heading = HUB)]
    pub agent_timeout: f64,

    /// Seconds without a request for data (flows, summary, workloads, MCP,
    /// /metrics) after which pulls pause; the next request wakes the hub
    /// and waits for the round it starts. At least one interval and the
    /// agent timeout (a round's length at most). 0: never pause.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = parse_seconds, env = "FLOWTAP_HUB_IDLE_AFTER", help_heading = HUB)]
    pub idle_after: f64,

    /// Agents pulled at most (1 to 65535: a flow's `seen_by` numbers them
    /// in 16 bits); more are not pulled, and answers name them missing in
    /// their coverage (flowtap_agent_up 0). Agents, not addresses: one
    /// address beyond the bound a round is asked which agent it is, and a
    /// second address of an agent pulled is not named.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=u64::from(u16::MAX)), env = "FLOWTAP_HUB_MAX_AGENTS", help_heading = HUB)]
    pub max_agents: usize,

    /// Bytes one agent's feed may take (e.g. 256Mi); a larger one fails its
    /// pull.
    #[arg(long, value_name = "SIZE", default_value = "256Mi", value_parser = parse_size_from::<1>, env = "FLOWTAP_HUB_MAX_FEED_BYTES", help_heading = HUB)]
    pub max_feed_bytes: u64,

    /// Bytes of agents' feeds the hub holds at once, fetched and not yet
    /// decoded (e.g. 512Mi; default 256Mi, or --max-feed-bytes where that
    /// is larger; at least --max-feed-bytes): a pull waits for room within
    /// its --agent-timeout, and fails past it, its agent named missing.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, env = "FLOWTAP_HUB_MAX_FEED_BYTES_HELD", help_heading = HUB)]
    pub max_feed_bytes_held: Option<u64>,

    /// Flows a round merges at most, over all agents (each of their feeds
    /// takes the count it holds; one that would go past the bound is not
    /// merged, and answers name its agent missing; the agents merged the
    /// round before keep their place): bounds the hub's
    /// memory, about 1.3 KiB a flow at the peak of a round (up to 4 KiB
    /// where both handshake legs of every flow hold a full sketch).
    #[arg(long, value_name = "N", default_value_t = 2_000_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_HUB_MAX_FLOWS", help_heading = HUB)]
    pub max_flows: usize,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub names: NamesArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The API server's options, shared by `flowtap` and `flowtap hub`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Serve the API on ADDR (default 127.0.0.1:8898): after reading files,
    /// until SIGINT, SIGTERM or SIGHUP; live, always.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_LISTEN, env = "FLOWTAP_LISTEN", help_heading = API)]
    pub listen: Option<SocketAddr>,

    /// Serve /healthz, /readyz and /metrics on ADDR, apart from the flow
    /// data (so that no load on the data port can fail a probe).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_LISTEN, env = "FLOWTAP_ADMIN_LISTEN", help_heading = API)]
    pub admin_listen: SocketAddr,

    /// Serve flow data on a non-loopback --listen address without
    /// --auth-token-file (refused otherwise: anyone who reaches the address
    /// could read every flow).
    #[arg(long, env = "FLOWTAP_INSECURE_LISTEN", help_heading = API)]
    pub insecure_listen: bool,

    /// Host names requests may use besides loopback names and the address
    /// they connected to (repeatable, or comma-separated; `*` allows any),
    /// e.g. the name of a Kubernetes Service in front of flowtap; a name or
    /// address without a port (an IPv6 address with or without brackets).
    /// Other Host headers get 403 (DNS-rebinding protection).
    #[arg(long, value_name = "HOST", value_delimiter = ',', value_parser = parse_allowed_host, env = "FLOWTAP_ALLOWED_HOST", help_heading = API)]
    pub allowed_host: Vec<String>,

    /// Print the body an API GET would return, e.g. '/mcp/flows?format=full&limit=1000000'.
    /// Repeatable; each body is printed on its own line. Default without
    /// --listen: a table of the top flows (--json: the summary). A hub
    /// prints its first round's answers and exits (listening only with
    /// --listen).
    #[arg(long, value_name = "PATH?QUERY", help_heading = API)]
    pub dump: Vec<String>,

    /// With -r and neither --dump nor --listen: print the summary's JSON
    /// instead of the table of top flows.
    #[arg(long, help_heading = API)]
    pub json: bool,

    /// Seconds a client gets to send a complete request head before the
    /// connection is closed (0.1 at the least).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds_from::<100>, env = "FLOWTAP_HTTP_HEADER_TIMEOUT", help_heading = API)]
    pub http_header_timeout: f64,

    /// Seconds within which a response must be written out, from its
    /// request's arrival; a client that reads slower is disconnected (0.1
    /// at the least).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds_from::<100>, env = "FLOWTAP_HTTP_RESPONSE_TIMEOUT", help_heading = API)]
    pub http_response_timeout: f64,

    /// HTTP connections open at once, on each listener (data and admin). At
    /// the limit, the oldest idle connection is closed to admit a new one,
    /// or with none idle the busy one whose socket has taken nothing, or
    /// whose request body has been coming in, longest (2 s at least: a
    /// client that stopped reading, or sends a byte at a time); otherwise
    /// the new one gets 503.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_HTTP_MAX_CONNECTIONS", help_heading = API)]
    pub http_max_connections: usize,

    /// HTTP connections one client address may hold open on each listener,
    /// so that one address (a flood of pipelined requests that keeps every
    /// connection busy) cannot keep the rest out, the kubelet's probes
    /// among them. At the bound, the client's own oldest idle (or stalled)
    /// connection is closed for its new one; with every one busy, the new
    /// one gets 503. An IPv6 client is its /64. Clients behind one address
    /// share it (every `kubectl port-forward` comes from 127.0.0.1, every
    /// user behind an Ingress or a NAT from its address: raise it there).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_HTTP_MAX_CONNECTIONS_PER_CLIENT", help_heading = API)]
    pub http_max_connections_per_client: usize,

    /// The largest `limit` a /mcp/flows request may ask for (larger ones get
    /// 400; --dump has no cap), at least 1000 (the default page of
    /// /mcp/workloads: a request without a limit is always answered). MCP
    /// tool calls are capped at 1000.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1000..), env = "FLOWTAP_HTTP_MAX_LIMIT", help_heading = API)]
    pub http_max_limit: usize,

    /// Large answers (over 1000 flows or workloads, MCP tool calls)
    /// rendered or being sent at once; more wait their turn, holding
    /// nothing. Each turn lasts until the answer has left for the client's
    /// socket, or is taken back from a client that stopped reading while
    /// others wait. For 5 minutes after, clients whose answers were taken
    /// back hold one turn at a time between them, and clients not seen
    /// before hold all but one: with two turns or more, a client that read
    /// its last answer always finds one. (A hub's pulls of the feed take
    /// turns of their own.)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_HTTP_MAX_LARGE_ANSWERS", help_heading = API)]
    pub http_max_large_answers: usize,

    /// /metrics answers rendered or being sent at once (each is megabytes
    /// with thousands of per-pair series); more wait their turn, as large
    /// answers do.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_HTTP_MAX_SCRAPES", help_heading = API)]
    pub http_max_scrapes: usize,

    /// File holding a bearer token: requests for flow data (/mcp and the
    /// /mcp/flows endpoints) must then send `Authorization: Bearer <token>`.
    /// Required to serve on a non-loopback address (see --insecure-listen).
    #[arg(long, value_name = "FILE", env = "FLOWTAP_AUTH_TOKEN_FILE", help_heading = API)]
    pub auth_token_file: Option<PathBuf>,

    /// Browser origins allowed besides loopback ones (repeatable, or
    /// comma-separated; `*` allows any), as browsers send them:
    /// `https://app.example[:PORT]`, no path. Requests with another Origin
    /// header get 403 (DNS-rebinding protection).
    #[arg(long, value_name = "ORIGIN", value_delimiter = ',', value_parser = parse_allowed_origin, env = "FLOWTAP_ALLOWED_ORIGIN", help_heading = API)]
    pub allowed_origin: Vec<String>,

    /// Messages one MCP JSON-RPC batch may hold; larger batches are refused.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_MCP_MAX_BATCH", help_heading = API)]
    pub mcp_max_batch: usize,

    /// Bytes one MCP reply may take (e.g. 8Mi; at least 64Ki); answers past
    /// it are replaced by an error asking for less.
    #[arg(long, value_name = "SIZE", default_value = "8Mi", value_parser = parse_size_from::<{ api::mcp::MIN_REPLY_BYTES as u64 }>, env = "FLOWTAP_MCP_MAX_REPLY_BYTES", help_heading = API)]
    pub mcp_max_reply_bytes: u64,

    /// Bytes one MCP request body may take (e.g. 1Mi; 256 at the least);
    /// a larger one gets 413, refused by its declared length before it is
    /// read.
    #[arg(long, value_name = "SIZE", default_value = "1Mi", value_parser = parse_size_from::<256>, env = "FLOWTAP_MCP_MAX_REQUEST_BYTES", help_heading = API)]
    pub mcp_max_request_bytes: u64,

    /// Bytes of MCP request bodies held at once, being read or handled
    /// (e.g. 16Mi; each counted at what has come in, 4 KiB at first,
    /// doubling as it comes; one below --mcp-max-request-bytes is
    /// refused); past it, requests get 503. One client (an address, an
    /// IPv6 /64) holds a quarter of it at most (at least
    /// --mcp-max-request-bytes). Default: 16Mi, or --mcp-max-request-bytes
    /// if larger.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, env = "FLOWTAP_MCP_MAX_REQUEST_BYTES_HELD", help_heading = API)]
    pub mcp_max_request_bytes_held: Option<u64>,

    /// MCP sessions open at once; when all are in use, the client holding
    /// the most (two more than the newcomer's, at least) gives its least
    /// recently used up, else the new one gets 503.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_MCP_MAX_SESSIONS", help_heading = API)]
    pub mcp_max_sessions: usize,

    /// MCP sessions one client (an address, an IPv6 /64) may hold; its
    /// least recently used one makes room for its next.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "FLOWTAP_MCP_SESSIONS_PER_CLIENT", help_heading = API)]
    pub mcp_sessions_per_client: usize,

    /// An MCP session unused this long ends, at least 1 s (a client that
    /// names its revision in MCP-Protocol-Version takes it up again with
    /// its next request; one that names none is answered 404): how long an
    /// idle session holds a place among --mcp-max-sessions.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600.0, value_parser = parse_seconds_from::<1000>, env = "FLOWTAP_MCP_SESSION_IDLE_TIMEOUT", help_heading = API)]
    pub mcp_session_idle_timeout: f64,

    /// Workload pairs (client and server namespace and workload, server
    /// port, protocol) with series of their own in /metrics; the traffic of
    /// further pairs goes to one "other" series.
    #[arg(long, value_name = "N", default_value_t = api::pairs::DEFAULT_MAX_PAIRS, env = "FLOWTAP_METRICS_MAX_PAIRS", help_heading = API)]
    pub metrics_max_pairs: usize,
}

/// Where Kubernetes names come from.
#[derive(Args, Debug, Clone)]
pub(crate) struct NamesArgs {
    /// Kubernetes inventory: what `kubectl get pods,services,endpointslices,nodes -A -o json`
    /// prints. Re-read when it changes.
    #[arg(long, value_name = "FILE", env = "FLOWTAP_K8S_INVENTORY", help_heading = K8S)]
    pub k8s_inventory: Option<PathBuf>,

    /// Follow pods, services, EndpointSlices and nodes through the
    /// Kubernetes API (in a pod, with its service account; elsewhere, with
    /// KUBECONFIG) instead of reading --k8s-inventory.
    #[arg(long, env = "FLOWTAP_K8S_WATCH", help_heading = K8S)]
    pub k8s_watch: bool,

    /// Kubernetes objects the watch keeps at most (all kinds together);
    /// more are left out and counted. Each pod costs about 3.5 KiB with
    /// its names; the default holds Kubernetes' largest tested cluster
    /// (150,000 pods, their services, EndpointSlices and nodes) in about
    /// 1 GiB.
    #[arg(long, value_name = "N", default_value_t = 300_000, env = "FLOWTAP_K8S_MAX_OBJECTS", help_heading = K8S)]
    pub k8s_max_objects: usize,

    /// Seconds a request to the Kubernetes API may go without an answer
    /// before it is given up and tried again (a list, or a watch being
    /// opened, that a proxy holds unanswered). The server is asked to end
    /// each watch before it (at nine tenths, 290 s at most), so that a
    /// quiet watch is not cut (2 s at the least: a watch is asked to last a
    /// whole second).
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = parse_seconds_from::<2000>, env = "FLOWTAP_K8S_REQUEST_TIMEOUT", help_heading = K8S)]
    pub k8s_request_timeout: f64,

    /// The most bytes of one page of a list (500 objects) or one watch
    /// event the Kubernetes API may send (64Ki at the least): a larger one
    /// is cut off, counted (flowtap_k8s_answers_too_large_total) and tried
    /// again as a failure, so that a server or proxy that sends without end
    /// holds about twice this memory at most for each of the four kinds
    /// (listed at once: 256 MiB at the default).
    #[arg(long, value_name = "SIZE", default_value = "32Mi", value_parser = parse_size_from::<65536>, env = "FLOWTAP_K8S_MAX_ANSWER_BYTES", help_heading = K8S)]
    pub k8s_max_answer_bytes: u64,

    /// The cluster's address ranges (repeatable, or comma-separated); servers
    /// outside all of them are external egress.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = parse_cidr, env = "FLOWTAP_CLUSTER_CIDR", help_heading = K8S)]
    pub cluster_cidr: Vec<IpNetwork>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "FLOWTAP_LOG_FORMAT", help_heading = LOGS)]
    pub log_format: LogFormat,

    /// Log level, or a tracing filter such as `info,flowtap_xdp=debug`.
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = parse_log_filter, env = "FLOWTAP_LOG_LEVEL", help_heading = LOGS)]
    pub log_level: String,

    /// A TOML file of options (keys are the long option names, e.g.
    /// `interface = "eth1"`, `cluster-cidr = ["10.0.0.0/8"]`). Command-line
    /// flags override environment variables, which override the file.
    #[arg(long, value_name = "FILE", env = "FLOWTAP_CONFIG", help_heading = LOGS)]
    pub config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum IpfixPer {
    Flow,
    Connection,
}

impl IpfixPer {
    pub(crate) fn records(self) -> ipfix::RecordsPer {
        match self {
            IpfixPer::Flow => ipfix::RecordsPer::Flow,
            IpfixPer::Connection => ipfix::RecordsPer::Connection,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    /// The running flowtap or hub, e.g. http://127.0.0.1:8898.
    #[arg(long, env = "FLOWTAP_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// File holding the bearer token the running flowtap was given.
    #[arg(long, value_name = "FILE", env = "FLOWTAP_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Seconds between refreshes (0.1 at the least).
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds_from::<100>)]
    pub interval: f64,
    /// Flows shown (1 at the least).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print the flows answer's JSON once (format=full) instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl ServeArgs {
    /// The server's limits and access rules; reads the token file. Pages
    /// refresh at the snapshot interval (`snapshot_interval_s`).
    pub(crate) fn server_config(&self, snapshot_interval_s: f64) -> anyhow::Result<ServerConfig> {
        let token = match &self.auth_token_file {
            Some(path) => Some(read_token("--auth-token-file", path)?),
            None => None,
        };
        // One body of the largest size fits: a room below it, given, is
        // refused (it was raised without a word).
        let held = self
            .mcp_max_request_bytes_held
            .unwrap_or(DEFAULT_MCP_REQUEST_BYTES_HELD.max(self.mcp_max_request_bytes));
        anyhow::ensure!(
            held >= self.mcp_max_request_bytes,
            "--mcp-max-request-bytes-held {held} is below --mcp-max-request-bytes {}: a request \
             the server takes must fit in the room for requests held at once",
            self.mcp_max_request_bytes
        );
        let seconds = std::time::Duration::from_secs_f64;
        Ok(ServerConfig {
            header_read_timeout: seconds(self.http_header_timeout),
            response_timeout: seconds(self.http_response_timeout),
            max_connections: self.http_max_connections.max(1),
            max_connections_per_client: self.http_max_connections_per_client.max(1),
            max_limit: self.http_max_limit,
            large_answers_at_once: self.http_max_large_answers.max(1),
            max_body_bytes: usize::try_from(self.mcp_max_request_bytes).unwrap_or(usize::MAX),
            max_body_bytes_held: usize::try_from(held).unwrap_or(usize::MAX),
            scrapes_at_once: self.http_max_scrapes.max(1),
            access: AccessConfig {
                token,
                allowed_origins: self.allowed_origin.clone(),
                allowed_hosts: self.allowed_host.clone(),
            },
            mcp: McpLimits {
                max_batch: self.mcp_max_batch.max(1),
                max_reply_bytes: usize::try_from(self.mcp_max_reply_bytes).unwrap_or(usize::MAX),
                max_sessions: self.mcp_max_sessions.max(1),
                sessions_per_client: self.mcp_sessions_per_client.max(1),
                session_idle_timeout: seconds(self.mcp_session_idle_timeout),
            },
            map_refresh: seconds(snapshot_interval_s),
            ..ServerConfig::default()
        })
    }

    /// Where the service listens: `--listen` (default 127.0.0.1:8898) and
    /// `--admin-listen`.
    pub(crate) fn listen(&self) -> Listen {
        Listen {
            data: self
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address")),
            admin: self.admin_listen,
            insecure: self.insecure_listen,
        }
    }
}

/// AF_XDP ring frames: a power of two the kernel accepts, within reason.
fn parse_ring_frames(text: &str) -> Result<u32, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if !n.is_power_of_two() || !(512..=65_536).contains(&n) {
        return Err(format!(
            "{n} is not a power of two from 512 to 65536 (the kernel's rings are powers of two)"
        ));
    }
    Ok(n)
}

/// AF_XDP buffer bytes: a frame size flowtap uses.
fn parse_frame_size(text: &str) -> Result<u32, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if !FRAME_SIZES.contains(&n) {
        return Err(format!("{n} is not one of {:?}", FRAME_SIZES));
    }
    Ok(n)
}

/// An enterprise number flowtap's elements can be under: not 0 (reserved),
/// nor RFC 5103's for reverse elements, under which flowtap's elements
/// would read as the reverse of standard ones (a collector took element 8
/// for the source address).
fn parse_enterprise_number(text: &str) -> Result<u32, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    match n {
        0 => Err("0 is reserved: give your organization's IANA enterprise number".to_owned()),
        ipfix::message::REVERSE_PEN => Err(format!(
            "{n} is RFC 5103's for reverse elements: give your organization's IANA enterprise number"
        )),
        n => Ok(n),
    }
}

/// A name a hub takes (one it would refuse in this flowtap's feed is
/// refused at start instead); not empty, which would name no node.
fn parse_node_name(text: &str) -> Result<String, String> {
    match api::feed::name_problem(text) {
        _ if text.is_empty() => Err(
            "an empty name: give the node's name, or leave the option out for the host name"
                .to_owned(),
        ),
        Some(problem) => Err(format!("not a name ({problem})")),
        None => Ok(text.to_owned()),
    }
}

/// One entry of a comma-separated list, without the spaces around it
/// (`a.example, b.example`): kept, ` b.example` matched no Host header.
fn parse_list_entry(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("an empty entry (a comma too many?)".to_owned()),
        entry => Ok(entry.to_owned()),
    }
}

/// An `--allowed-host` entry, as a Host header is compared: its name
/// without the port (an entry with one, or a path, could never match, and
/// was taken without a word); an IPv6 address without its brackets.
fn parse_allowed_host(text: &str) -> Result<String, String> {
    let entry = parse_list_entry(text)?;
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => Err(format!("{entry:?}: brackets hold an IPv6 address")),
        };
    }
    // As the Host header's is compared (RFC 5952's form).
    if let Ok(ip) = entry.parse::<std::net::Ipv6Addr>() {
        return Ok(ip.to_string());
    }
    if entry.contains('/') {
        return Err(format!("{entry:?}: a host name, not a URL"));
    }
    if entry.contains(':') {
        return Err(format!(
            "{entry:?}: a host name without its port (the Host header's port is not compared)"
        ));
    }
    Ok(entry)
}

/// An `--allowed-origin` entry, as a browser sends an Origin header:
/// `scheme://host[:port]` (any scheme: an extension's or an editor's
/// webview's too), nothing after (`https://app.example/` never matched,
/// and was taken without a word).
fn parse_allowed_origin(text: &str) -> Result<String, String> {
    let entry = parse_list_entry(text)?;
    if entry == "*" {
        return Ok(entry);
    }
    let scheme_ok = |scheme: &str| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let (_, authority) = entry
        .split_once("://")
        .filter(|(scheme, _)| scheme_ok(scheme))
        .ok_or_else(|| {
            format!("{entry:?}: an origin is SCHEME://HOST[:PORT] (e.g. https://app.example)")
        })?;
    if authority.is_empty() || authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{entry:?}: an origin is a scheme, a host and a port, without a path or a trailing /"
        ));
    }
    Ok(entry)
}

/// An agent's URL, checked where it is read, so that an error names the
/// variable or the file that gave it.
fn parse_agent_url(text: &str) -> Result<String, String> {
    let entry = parse_list_entry(text)?;
    AgentUrl::parse(&entry)?;
    Ok(entry)
}

/// A DNS name and port of agents, checked where it is read (as
/// [`parse_agent_url`]).
fn parse_agents_dns(text: &str) -> Result<String, String> {
    let entry = parse_list_entry(text)?;
    hub::AgentSource::dns(&entry)?;
    Ok(entry)
}

/// The agents' Service, checked where it is read (as [`parse_agent_url`]).
fn parse_agents_service(text: &str) -> Result<String, String> {
    hub::AgentSource::service(text)?;
    Ok(text.to_owned())
}

/// An address range of a comma-separated list, spaces around it allowed;
/// an IPv4-mapped one as the IPv4 range it stands for (it matched nothing:
/// flows hold IPv4 addresses as IPv4; `ip=` took it so already).
fn parse_cidr(text: &str) -> Result<IpNetwork, String> {
    text.trim()
        .parse()
        .map(api::cluster::as_ipv4_if_mapped)
        .map_err(|e| format!("{:?} is not an address range: {e}", text.trim()))
}

/// Seconds, at least `MIN_MS` milliseconds: a snapshot interval or a
/// timeout shorter than that would be raised to it (0 was, silently).
fn parse_seconds_from<const MIN_MS: u64>(text: &str) -> Result<f64, String> {
    let s = parse_seconds(text)?;
    let min = MIN_MS as f64 / 1000.0;
    if s < min {
        return Err(format!("{text:?}: at least {min} s"));
    }
    Ok(s)
}

/// Seconds: a finite, non-negative number (a duration that fits).
fn parse_seconds(text: &str) -> Result<f64, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&s) {
        return Err(format!(
            "{text:?}: give a finite number of seconds between 0 and 1e9"
        ));
    }
    Ok(s)
}

/// A size in bytes: a number with an optional unit, k/M/G/T (powers of
/// 1000) or Ki/Mi/Gi/Ti (powers of 1024), a trailing B allowed; a decimal
/// fraction with a unit as Kubernetes writes one (`1.5Gi`), to the byte.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_size = || format!("{text:?} is not a size (e.g. 512Mi, 1.5Gi, 1G)");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().map_err(|_| not_a_size())?;
    if !fraction.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 9 {
        return Err(not_a_size());
    }
    let unit = unit.trim();
    // One B (`64MiB`), not any number of them (`1BB`).
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    if number.contains('.') && unit.is_empty() {
        return Err(format!(
            "{text:?}: a fraction of a byte; give a unit (e.g. 1.5Gi)"
        ));
    }
    let multiplier: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit in {text:?}; use k, M, G, T, Ki, Mi, Gi or Ti"
            ));
        }
    };
    // The fraction's bytes, rounded down: 1.5Gi is 1610612736.
    let fraction_bytes = match fraction {
        "" => 0,
        digits => {
            let scale = 10u128.pow(digits.len() as u32);
            let value: u128 = digits.parse().map_err(|_| not_a_size())?;
            (value * u128::from(multiplier) / scale) as u64
        }
    };
    whole
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(fraction_bytes))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `--ipfix-collector`'s URL, its scheme checked (its host is resolved at
/// start).
fn parse_collector_url(text: &str) -> Result<String, String> {
    crate::setup::collector_url(text)?;
    Ok(text.to_owned())
}

/// A `--log-level` filter, checked as it is parsed so that a bad one is
/// named with where it came from (a flag, a variable, the config file).
fn parse_log_filter(text: &str) -> Result<String, String> {
    crate::check_log_filter(text)?;
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// A size (`parse_size`) of at least `MIN` bytes.
fn parse_size_from<const MIN: u64>(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        size if size < MIN => Err(format!("{text:?}: at least {MIN} bytes")),
        size => Ok(size),
    }
}

/// A flowtap's URL as `top` and `mcp-stdio` take it (`FLOWTAP_URL` serves
/// both): `http://HOST[:PORT]` and the path flowtap's own paths go under
/// (empty, or a proxy's prefix), a trailing `/` or `/mcp` (the MCP
/// endpoint, which `mcp-stdio` is usually given) left out.
pub(crate) fn flowtap_url(url: &str) -> Result<(AgentUrl, &str), String> {
    let (agent, base) = AgentUrl::parse_with_path(url, "--auth-token-file")
        .map_err(|e| format!("--url must be http://HOST:PORT[/PREFIX]: {e}"))?;
    Ok((agent, base.strip_suffix(api::mcp::PATH).unwrap_or(base)))
}

/// What `flowtap healthcheck` asks: the host (`host:port`) and path of
/// `url` (`http://` may be left out; `/healthz` when it names no path),
/// else the admin listener's `/healthz` (a wildcard address asked on
/// loopback).
pub(crate) fn healthcheck_target(
    admin_listen: &str,
    url: Option<&str>,
) -> Result<(String, String), String> {
    if let Some(url) = url {
        let url = match url.contains("://") {
            true => url.to_owned(),
            false => format!("http://{url}"),
        };
        // The path is asked as given, its query too (no prefix joined).
        let (url, query) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(u, q)| (u, Some(q)));
        let (agent, path) = AgentUrl::parse_with_path(url, "")?;
        let path = if path.is_empty() { "/healthz" } else { path };
        let path = match query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        return Ok((agent.authority, path));
    }
    let host = match admin_listen.parse::<SocketAddr>() {
        // `[::]` too is asked on 127.0.0.1: a listener of `[::]` takes
        // IPv4 as well, and on a host without IPv6 listens on IPv4 alone.
        Ok(addr) if addr.ip().is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()).to_string()
        }
        _ => admin_listen.to_owned(),
    };
    Ok((host, "/healthz".to_owned()))
}

/// A bearer token from its file: the first line, trimmed; never empty.
pub(crate) fn read_token(option: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{option} {}: {e}", path.display()))?;
    // The token is the file's one line (a trailing newline, or CRLF, as
    // editors and `kubectl create secret --from-file` leave it). A first
    // line blank read as an empty file; a second line was dropped without
    // a word: either may be a token pasted in the wrong place.
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let token = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("{option} {}: the file holds no token", path.display()))?;
    anyhow::ensure!(
        lines.next().is_none(),
        "{option} {}: more than one line; the file holds the token alone",
        path.display()
    );
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes as Kubernetes writes them, fractions too.
    #[test]
    fn sizes_in_their_units() {
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_size("0.5k"), Ok(500));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.Gi"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        // One B, not any number of them (`1BB` read as 1).
        for bad in [
            ".5Gi", "1.5.2Gi", "1..5Gi", "Gi", "1.5X", "1.5", "0.5B", "1BB", "1KiBB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    /// A token file's one line, blank lines and spaces around it aside;
    /// none, or two, refused.
    #[test]
    fn a_token_file_holds_the_token_alone() {
        let dir = tempfile::tempdir().unwrap();
        let read = |text: &str| {
            let path = dir.path().join("token");
            std::fs::write(&path, text).unwrap();
            read_token("--auth-token-file", &path).map_err(|e| e.to_string())
        };
        for good in ["s3cret", "s3cret\n", "s3cret\r\n", "\n\n s3cret \n\n"] {
            assert_eq!(read(good), Ok("s3cret".into()), "{good:?}");
        }
        assert!(read("").unwrap_err().contains("holds no token"));
        assert!(read("\n \n").unwrap_err().contains("holds no token"));
        assert!(
            read("s3cret\nother\n")
                .unwrap_err()
                .contains("more than one line")
        );
    }

    /// Host and origin entries as headers are compared: an IPv6 address's
    /// brackets taken off; a port, a path, a trailing slash refused.
    #[test]
    fn allowed_hosts_and_origins_are_what_headers_name() {
        assert_eq!(
            parse_allowed_host(" [2001:db8::1]"),
            Ok("2001:db8::1".into())
        );
        assert_eq!(parse_allowed_host("2001:db8::1"), Ok("2001:db8::1".into()));
        assert_eq!(
            parse_allowed_host("Flowtap.Example"),
            Ok("Flowtap.Example".into())
        );
        for bad in [
            "a.example:80",
            "[a.example]",
            "http://a.example",
            "a.example/x",
        ] {
            assert!(parse_allowed_host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_allowed_origin("https://app.example:8443"),
            Ok("https://app.example:8443".into())
        );
        assert_eq!(parse_allowed_origin("*"), Ok("*".into()));
        for good in [
            "chrome-extension://abcdefgh",
            "HTTPS://APP.EXAMPLE",
            "vscode-webview://x",
        ] {
            assert_eq!(parse_allowed_origin(good), Ok(good.into()), "{good}");
        }
        assert_eq!(parse_allowed_host("2001:0db8::1"), Ok("2001:db8::1".into()));
        for bad in [
            "app.example",
            "https://app.example/",
            "https://",
            "null",
            "https://a/b",
        ] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad}");
        }
    }

    /// The port written as a literal where a constant cannot be built
    /// from another (clap's defaults) is the one port.
    #[test]
    fn the_default_url_is_the_default_listener() {
        assert_eq!(DEFAULT_URL, format!("http://{DEFAULT_LISTEN}"));
        let port = DEFAULT_LISTEN.parse::<SocketAddr>().unwrap().port();
        assert_eq!(port, hub::agents::DEFAULT_AGENT_PORT);
    }

    /// The image's HEALTHCHECK runs `flowtap healthcheck` without a URL:
    /// it must ask the admin listener, where `/healthz` is.
    #[test]
    fn the_healthcheck_asks_the_default_admin_listener() {
        // `/healthz` on the default admin listener, where it is served (the
        // data listener has none).
        let target = |host: &str, path: &str| Ok((host.to_owned(), path.to_owned()));
        assert_eq!(
            healthcheck_target(DEFAULT_ADMIN_LISTEN, None),
            target("127.0.0.1:8899", "/healthz")
        );
        // The listener as flowtap was given it (its variable is read too).
        assert_eq!(
            healthcheck_target("0.0.0.0:9100", None),
            target("127.0.0.1:9100", "/healthz")
        );
        assert_eq!(
            healthcheck_target("10.0.0.0:9100", None),
            target("10.0.0.0:9100", "/healthz")
        );
        assert_eq!(
            healthcheck_target("[::]:9100", None),
            target("127.0.0.1:9100", "/healthz")
        );
        // A URL as the other commands take one, or with its path.
        for url in ["http://10.0.0.5:8899", "http://10.0.0.5:8899/"] {
            assert_eq!(
                healthcheck_target("x", Some(url)),
                target("10.0.0.5:8899", "/healthz")
            );
        }
        assert_eq!(
            healthcheck_target("x", Some("http://10.0.0.5:8899/readyz")),
            target("10.0.0.5:8899", "/readyz")
        );
        // Checked as the other commands' URLs are: a port, no credentials
        // (said without them), no TLS.
        assert_eq!(
            healthcheck_target("x", Some("10.0.0.5")),
            target("10.0.0.5:80", "/healthz")
        );
        assert_eq!(
            healthcheck_target("x", Some("http://10.0.0.5:8899/readyz?verbose")),
            target("10.0.0.5:8899", "/readyz?verbose")
        );
        for url in ["http://u:s3cret@h:8899/healthz", "https://h:8899", "h:0"] {
            let said = healthcheck_target("x", Some(url)).unwrap_err();
            assert!(!said.contains("s3"), "{said}");
        }
    }

    /// `top` and `mcp-stdio` read one `FLOWTAP_URL`: the base URL, the MCP
    /// endpoint's, or either under a proxy's prefix (which `top` dropped,
    /// asking the proxy's root).
    #[test]
    fn an_enterprise_number_is_refused_where_collectors_misread_it() {
        assert_eq!(parse_enterprise_number("32473"), Ok(32473));
        for refused in ["0", "29305", "-1", "x"] {
            assert!(parse_enterprise_number(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_flowtap_url_keeps_a_proxy_s_prefix() {
        for (url, parts) in [
            ("http://h:8898", Some(("h:8898", ""))),
            ("http://h:8898/", Some(("h:8898", ""))),
            ("http://h:8898/mcp", Some(("h:8898", ""))),
            ("http://h/flowtap/", Some(("h:80", "/flowtap"))),
            ("http://h/flowtap/mcp/", Some(("h:80", "/flowtap"))),
            ("https://h:8898", None),
            // Its query would have been joined to flowtap's paths.
            ("http://h:8898/?x", None),
        ] {
            let got = flowtap_url(url).ok();
            let got = got.as_ref().map(|(a, base)| (a.authority.as_str(), *base));
            assert_eq!(got, parts, "{url}");
        }
    }
}
