//! `flowtap-capgen`: writes a synthetic capture and, optionally, its truth.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::PathBuf;

use capgen::pcap::Format;
use capgen::{Generator, Spec};
use clap::Parser;

/// Writes a synthetic pcap (Ethernet, ns timestamps) with exact ground truth.
#[derive(Parser, Debug)]
#[command(name = "flowtap-capgen", version)]
struct Args {
    /// Output capture file.
    #[arg(short, long)]
    output: PathBuf,
    /// Write the truth (flows, frame counts) as JSON here.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Frames to write.
    #[arg(long, default_value_t = 100_000)]
    packets: u64,
    /// Connections open at once.
    #[arg(long, default_value_t = 1_000)]
    concurrent: usize,
    /// Mean data packets per connection.
    #[arg(long, default_value_t = 20)]
    mean_data_packets: u32,
    /// Distinct client hosts. Each has an IPv4 address in 198.18.0.0/16 and
    /// an IPv6 one in 2001:db8::/48 (a fifth of connections use IPv6), so a
    /// capture can hold up to twice as many client addresses; the /16 holds
    /// 65,536, and clients past that share IPv4 addresses.
    #[arg(long, default_value_t = 2_000)]
    clients: u32,
    /// Distinct server hosts, addressed as clients are (198.19.0.0/16 and
    /// 2001:db8:1::/48).
    #[arg(long, default_value_t = 100)]
    servers: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Clean TCP/UDP only: no malformed frames, tags, fragments or truncation.
    #[arg(long)]
    clean: bool,
    /// Carry a fifth of the connections in tunnels and mirror sessions
    /// (VXLAN, GENEVE, GRE, ERSPAN, IP-in-IP, GTP-U).
    #[arg(long)]
    tunnels: bool,
    /// Store at most this many bytes of each frame (wire lengths are kept).
    #[arg(long)]
    snaplen: Option<u32>,
    /// Write pcapng instead of classic pcap.
    #[arg(long)]
    pcapng: bool,
    /// Stretch time: every gap between frames this many times longer (the
    /// same frames, in the same order, over that many times the duration;
    /// handshake times too, in the truth as well).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    time_scale: u64,
    /// Who talks to whom: a TOML file of `[[route]]` tables (clients,
    /// server, port, proto, weight, rtt_us, failing), as demo/traffic.toml.
    #[arg(long)]
    routes: Option<PathBuf>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let routes = match &args.routes {
        Some(path) => capgen::workload::routes_from_toml(&std::fs::read_to_string(path)?)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?,
        None => Vec::new(),
    };
    let spec = Spec {
        routes,
        packets: args.packets,
        concurrent: args.concurrent,
        mean_data_packets: args.mean_data_packets,
        clients: args.clients,
        servers: args.servers,
        seed: args.seed,
        time_scale: args.time_scale,
        anomalies: !args.clean,
        tunnels: args.tunnels,
        snaplen: args.snaplen,
        format: if args.pcapng {
            Format::PcapNg
        } else {
            Format::default()
        },
        ..Spec::default()
    };
    let file = File::create(&args.output)?;
    let (truth, _) = Generator::new(spec).write(file)?;
    if let Some(path) = args.truth {
        serde_json::to_writer(File::create(path)?, &truth)?;
    }
    eprintln!(
        "flowtap-capgen: wrote {} frames, {} flows, {} connections to {}",
        truth.frames,
        truth.flows.len(),
        truth.flows.iter().map(|f| f.connections).sum::<u64>(),
        args.output.display()
    );
    Ok(())
}
