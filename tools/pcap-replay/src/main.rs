//! `pcap-replay -i IFACE FILE...`: sends a capture's frames onto an interface
//! through AF_XDP transmit sockets, at the recorded speed, a multiple of it,
//! a fixed rate, or as fast as possible, optionally looped, on one or
//! several queues; then prints what was sent and what failed. With
//! `--sent FILE` it also writes what it sent, stamped with when it sent it.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use anyhow::{Context, bail};
use capgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
use clap::Parser;
use pipeline::capture::CaptureFile;
use pipeline::time::wall_now_ns;
use pipeline::wire::dissect::{Dissected, LinkType, dissect};
use xdp::xsk::{BindMode, TxSocket, XskConfig};

/// Replays capture files onto a network interface.
#[derive(Parser, Debug)]
#[command(name = "pcap-replay", version)]
struct Args {
    /// Interface to send on.
    #[arg(short = 'i', long = "interface")]
    interface: String,
    /// Capture files (pcap or pcapng), sent in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Replay at this multiple of the recorded speed (1 = as recorded).
    #[arg(long, default_value_t = 1.0, conflicts_with_all = ["pps", "max"])]
    speed: f64,
    /// Send at a fixed rate instead, in packets per second.
    #[arg(long, conflicts_with = "max")]
    pps: Option<f64>,
    /// Send as fast as possible.
    #[arg(long)]
    max: bool,
    /// Send the files this many times.
    #[arg(long = "loop", default_value_t = 1)]
    loops: u32,
    /// Transmit queues to spread frames over (on a veth, frames arrive on
    /// the peer's rx queue of the same number).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// How frames are spread over the queues: `source` keeps each sender
    /// (address and port) on one queue, like asymmetric RSS: a connection's
    /// two directions may land on different queues, each in order.
    /// `direction` always splits them: the lower endpoint's frames on one
    /// queue, the other's on the next. `frame` deals frames out round-robin.
    #[arg(long, value_enum, default_value_t = Spread::Source)]
    spread: Spread,
    /// Also write every frame sent to this capture file (pcap, nanosecond
    /// stamps), stamped with the wall-clock time it was handed to the kernel
    /// (with `--max`, when it was queued): the reference for timing checks,
    /// since a sender that the scheduler delays sends later than the
    /// recording says.
    #[arg(long, value_name = "FILE")]
    sent: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Spread {
    Source,
    Direction,
    Frame,
}

/// The queue a frame goes out on.
fn queue_for(spread: Spread, queues: u32, n: u64, link: LinkType, frame: &[u8]) -> usize {
    if queues <= 1 {
        return 0;
    }
    match spread {
        Spread::Frame => (n % u64::from(queues)) as usize,
        Spread::Source | Spread::Direction => match dissect(link, frame) {
            Ok(Dissected::Transport(t)) if spread == Spread::Source => {
                let mut h = DefaultHasher::new();
                (t.src, t.src_port).hash(&mut h);
                (h.finish() % u64::from(queues)) as usize
            }
            Ok(Dissected::Transport(t)) => {
                // Both directions of a connection hash alike; the lower
                // endpoint takes that queue, the higher the next one.
                let (lo, hi) = if (t.src, t.src_port) <= (t.dst, t.dst_port) {
                    ((t.src, t.src_port), (t.dst, t.dst_port))
                } else {
                    ((t.dst, t.dst_port), (t.src, t.src_port))
                };
                let mut h = DefaultHasher::new();
                (lo, hi).hash(&mut h);
                let base = h.finish() % u64::from(queues);
                let upper = u64::from((t.src, t.src_port) != lo);
                ((base + upper) % u64::from(queues)) as usize
            }
            _ => 0,
        },
    }
}

/// When the next frame is due.
enum Pace {
    Recorded { speed: f64 },
    Fixed { interval: Duration },
    Max,
}

fn wait_until(deadline: Instant) {
    // Sleep most of the way, then spin: scheduler wake-ups are too coarse for
    // sub-millisecond gaps.
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pace = match (args.max, args.pps) {
        (true, _) => Pace::Max,
        (false, Some(pps)) if pps > 0.0 => Pace::Fixed {
            interval: Duration::from_secs_f64(1.0 / pps),
        },
        (false, Some(_)) => bail!("--pps must be positive"),
        (false, None) if args.speed > 0.0 => Pace::Recorded { speed: args.speed },
        (false, None) => bail!("--speed must be positive"),
    };
    let ifindex = xdp::sys::if_index(&args.interface)
        .with_context(|| format!("interface {}", args.interface))?;
    let config = XskConfig {
        frame_count: 2048,
        bind: BindMode::Auto,
        ..XskConfig::default()
    };
    let mut sockets = (0..args.queues.max(1))
        .map(|q| {
            TxSocket::open(ifindex, q, &config)
                .with_context(|| format!("AF_XDP socket on {} queue {q}", args.interface))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Frames are sent as they are: Ethernet only (refused otherwise below).
    let mut sent_log = match &args.sent {
        Some(path) => Some(
            File::create(path)
                .and_then(|f| PcapWriter::new(f, LINKTYPE_ETHERNET))
                .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let (mut sent, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut next_due = started;
    for _ in 0..args.loops {
        for path in &args.files {
            let mut file = CaptureFile::open(path)?;
            // Recorded pacing: frame times relative to the file's first frame.
            let mut first_ts: Option<u64> = None;
            let file_start = Instant::now();
            loop {
                let mut result: anyhow::Result<()> = Ok(());
                let n = file.read_frames(1, |frame| {
                    match &pace {
                        Pace::Recorded { speed } => {
                            let t0 = *first_ts.get_or_insert(frame.ts_ns);
                            let offset = frame.ts_ns.saturating_sub(t0) as f64 / speed;
                            wait_until(file_start + Duration::from_nanos(offset as u64));
                        }
                        Pace::Fixed { interval } => {
                            wait_until(next_due);
                            next_due += *interval;
                        }
                        Pace::Max => {}
                    }
                    if frame.link != LinkType::Ethernet {
                        // Sent as they are, other link layers' frames would
                        // reach the receiver as garbage Ethernet.
                        result = Err(anyhow::anyhow!(
                            "{}: a {:?} frame, not Ethernet: pcap-replay sends Ethernet frames only",
                            path.display(),
                            frame.link
                        ));
                        return;
                    }
                    let q = queue_for(
                        args.spread,
                        args.queues,
                        sent + failed,
                        frame.link,
                        frame.data,
                    );
                    let socket = &mut sockets[q];
                    if frame.data.len() > socket.max_frame()
                        || frame.data.len() < frame.wire_len as usize
                    {
                        // Cut by a snaplen, or longer than the socket sends (a
                        // frame longer than a buffer needs a multi-buffer
                        // socket, Linux 6.6): cannot be sent as recorded.
                        failed += 1;
                        return;
                    }
                    loop {
                        match socket.push(frame.data) {
                            Ok(true) => break,
                            Ok(false) => socket.kick(),
                            Err(e) => {
                                result = Err(anyhow::Error::from(e).context("sending"));
                                return;
                            }
                        }
                    }
                    if let Some(log) = &mut sent_log
                        && let Err(e) = log.write(wall_now_ns(), frame.data, frame.wire_len)
                    {
                        result = Err(e).context("writing the sent frames");
                        return;
                    }
                    if !matches!(pace, Pace::Max) {
                        socket.kick();
                    }
                    sent += 1;
                    bytes += frame.data.len() as u64;
                })?;
                result?;
                if n == 0 {
                    break;
                }
            }
        }
    }
    if let Some(log) = sent_log {
        log.finish().context("writing the sent frames")?;
    }
    // Wait for the kernel to finish sending.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sockets.iter().any(|s| s.in_flight() > 0) && Instant::now() < deadline {
        for s in &mut sockets {
            s.kick();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    let bogus: u64 = sockets.iter().map(|s| s.bogus_completions()).sum();
    if bogus > 0 {
        eprintln!("pcap-replay: {bogus} completions named no frame being sent (ignored)");
    }
    let invalid: u64 = sockets
        .iter()
        .filter_map(|s| s.kernel_stats().ok())
        .map(|k| k.tx_invalid_descs)
        .sum();
    println!(
        "pcap-replay: sent {sent} frames ({bytes} bytes) in {secs:.3} s ({:.0} pps), failed {}",
        sent as f64 / secs.max(1e-9),
        failed + invalid
    );
    Ok(())
}
