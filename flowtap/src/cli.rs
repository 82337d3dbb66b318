//! Command-line options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use http_api::server::ServerConfig;
use ipnetwork::IpNetwork;

/// Where the API listens when `--listen` is given without an address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8898";

/// flowtap: L4 flows (who talks to whom, how much, how healthy) from a mirror
/// port or capture files, served as Kubeshark-compatible MCP L4 endpoints.
#[derive(Parser, Debug)]
#[command(name = "flowtap", version, about, long_about = None)]
pub struct Cli {
    /// Read packets from capture files (pcap or pcapng), in order, as one stream.
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1.., required = true)]
    pub read: Vec<PathBuf>,

    /// Serve the API on ADDR (default 127.0.0.1:8898) after reading, until
    /// SIGINT or SIGTERM.
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

    /// Worker threads (shards). Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Handshake-time window in seconds for percentiles. Default for files:
    /// the whole capture.
    #[arg(long, value_name = "SECONDS")]
    pub rtt_window: Option<u32>,

    /// Window in seconds over which pps/bps are averaged.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub rate_window: u64,

    /// Drop TCP connections (and flows) idle this long. Default for files: never.
    #[arg(long, value_name = "SECONDS")]
    pub tcp_timeout: Option<u64>,

    /// Drop UDP connections (and flows) idle this long. Default for files: never.
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
