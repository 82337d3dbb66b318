//! Command-line options.

use std::path::PathBuf;

use clap::Parser;

/// flowtap: L4 flows (who talks to whom, how much, how healthy) from a mirror
/// port or capture files, served as Kubeshark-compatible MCP L4 endpoints.
#[derive(Parser, Debug)]
#[command(name = "flowtap", version, about, long_about = None)]
pub struct Cli {
    /// Read packets from capture files (pcap or pcapng), in order, as one stream.
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1.., required = true)]
    pub read: Vec<PathBuf>,

    /// Print the body an API GET would return, e.g. '/mcp/flows?format=full&limit=1000000'.
    /// Repeatable; each body is printed on its own line. Default: the summary.
    #[arg(long, value_name = "PATH?QUERY")]
    pub dump: Vec<String>,

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

    /// Fixed hash seed, for reproducible shard placement (testing).
    #[arg(long, value_name = "N", hide = true)]
    pub hash_seed: Option<u64>,
}
