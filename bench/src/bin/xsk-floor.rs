//! `xsk-floor IFACE COUNT_FILE`: the receive floor of flowtap's live
//! capture, for the live benchmark. It sets capture up exactly as
//! `flowtap -i IFACE --mode span` does (flowtap's XDP program with its
//! timestamp, one copy-mode AF_XDP socket per rx queue, promiscuous mode)
//! and polls each socket through the same source (`xdp::XskSource`: its
//! batch, its naps and its waits), but hands the frames to nothing: each is
//! counted and given back to the fill ring. What flowtap costs above this is
//! its pipeline (parsing, hand-off, the flow table, snapshots); what this
//! costs above XDP_DROP is the AF_XDP copy and the wake-ups (BENCHMARKS.md,
//! live section). One difference: its threads are not pinned to cores, as
//! flowtap's workers are by default.
//!
//! The count of frames received is written to COUNT_FILE every 100 ms
//! (replaced whole, so a reader never sees half of it). It runs until its
//! standard input closes, then detaches everything it attached.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pipeline::source::{PacketSource, Poll};
use xdp::{LiveCapture, LiveConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(count_file)) = (args.next(), args.next().map(PathBuf::from)) else {
        eprintln!("usage: xsk-floor IFACE COUNT_FILE (runs until stdin closes)");
        std::process::exit(2);
    };
    let (capture, sources) = LiveCapture::start(&LiveConfig::new(&iface)).unwrap_or_else(|e| {
        eprintln!("xsk-floor: {iface}: {e}");
        std::process::exit(1);
    });
    eprintln!(
        "xsk-floor: {} rx queue(s) on {iface}, xdp_mode=\"{}\", zero_copy={}",
        sources.len(),
        capture.info.xdp_mode,
        capture.info.zero_copy
    );
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = sources
        .into_iter()
        .map(|mut source| {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut frames = 0u64;
                    // Reads one byte of each frame, as a parser would at least.
                    let mut first_bytes = 0u8;
                    let status = source.poll(|frame| {
                        frames += 1;
                        first_bytes ^= frame.data.first().copied().unwrap_or(0);
                    });
                    std::hint::black_box(first_bytes);
                    received.fetch_add(frames, Ordering::Relaxed);
                    if let Poll::Failed(why) = status {
                        eprintln!("xsk-floor: {why}");
                        std::process::exit(1);
                    }
                }
            })
        })
        .collect();
    let writer = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = count_file.with_extension("tmp");
            while !stop.load(Ordering::Relaxed) {
                let count = received.load(Ordering::Relaxed).to_string();
                if let Err(e) =
                    std::fs::write(&tmp, count).and_then(|()| std::fs::rename(&tmp, &count_file))
                {
                    eprintln!("xsk-floor: {}: {e}", count_file.display());
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Anything on stdin is ignored; its end is the signal to stop.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = writer.join();
    capture.stop();
    eprintln!("xsk-floor: received {}", received.load(Ordering::Relaxed));
}
