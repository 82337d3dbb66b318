//! Command-line options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use http_api::server::ServerConfig;
use ipnetwork::IpNetwork;

/// Where the API listens when `--listen` is given without an address (and,
/// live, by default).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8898";

/// flowtap: L4 flows (who talks to whom, how much, how healthy) from a mirror
/// port or capture files, served as Kubeshark-compatible MCP L4 endpoints.
#[derive(Parser, Debug)]
#[command(name = "flowtap", version, about, long_about = None)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["read", "interface"]))]
pub struct Cli {
    /// Read packets from capture files (pcap or pcapng), in order, as one stream.
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1..)]
    pub read: Vec<PathBuf>,

    /// Capture live on this interface with XDP and AF_XDP (needs root, or
    /// CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: Option<String>,

    /// span: the interface is a dedicated mirror port and its frames are
    /// consumed. host: the node's own interface; its traffic is mirrored to a
    /// veth pair flowtap creates and flows on untouched.
    #[arg(long, value_enum, default_value_t = ModeArg::Span)]
    pub mode: ModeArg,

    /// XDP attach mode: auto tries driver mode and falls back to skb (generic).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// What XDP does with frames of rx queues flowtap has no socket on.
    #[arg(long, value_enum, default_value_t = UnboundArg::Pass)]
    pub unbound: UnboundArg,

    /// Rx queues to capture (default: all of the interface's).
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,

    /// Cores to pin workers to, e.g. 0,2,4 (default: every CPU). Queue i's
    /// worker runs on the i-th core; the HTTP threads avoid these cores when
    /// others are left.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cores: Vec<usize>,

    /// Spin on the rings instead of sleeping when idle (lowest latency, one
    /// full core per queue).
    #[arg(long)]
    pub busy_poll: bool,

    /// Serve the API on ADDR (default 127.0.0.1:8898): after reading files,
    /// until SIGINT or SIGTERM; live, always.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_LISTEN)]
    pub listen: Option<SocketAddr>,

    /// Print the body an API GET would return, e.g. '/mcp/flows?format=full&limit=1000000'.
    /// Repeatable; each body is printed on its own line. Default without
    /// --listen: the summary.
    #[arg(long, value_name = "PATH?QUERY")]
    pub dump: Vec<String>,

    /// Kubernetes inventory: what `kubectl get pods,services,endpointslices,nodes -A -o json`
    /// prints. Re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub k8s_inventory: Option<PathBuf>,

    /// The cluster's address ranges (repeatable); servers outside all of them
    /// are external egress.
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Vec<IpNetwork>,

    /// Worker threads (shards) for files. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Seconds between published snapshots (live).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub snapshot_interval: f64,

    /// Handshake-time window in seconds for percentiles. Default: 120 live,
    /// the whole capture for files.
    #[arg(long, value_name = "SECONDS")]
    pub rtt_window: Option<u32>,

    /// Window in seconds over which pps/bps are averaged.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub rate_window: u64,

    /// Drop TCP connections (and flows) idle this long. Default: 300 live,
    /// never for files.
    #[arg(long, value_name = "SECONDS")]
    pub tcp_timeout: Option<u64>,

    /// Drop UDP connections (and flows) idle this long. Default: 60 live,
    /// never for files.
    #[arg(long, value_name = "SECONDS")]
    pub udp_timeout: Option<u64>,

    /// Seconds a client gets to send a complete request head before the
    /// connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub http_header_timeout: f64,

    /// Fixed hash seed, for reproducible shard placement (testing).
    #[arg(long, value_name = "N", hide = true)]
    pub hash_seed: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Span,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Driver,
    Skb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnboundArg {
    Pass,
    Drop,
}

impl Cli {
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            header_read_timeout: std::time::Duration::from_secs_f64(
                self.http_header_timeout.max(0.001),
            ),
            ..ServerConfig::default()
        }
    }
}
