//! Tables for people at a terminal: the top flows of a view, width-aware
//! (comfy-table measures the terminal and wraps), with sizes and rates in
//! human units. `--json` (or `--dump`) gives machines the API's JSON.

use api::rest::rows::{EndpointFields, Row};
use api::view::View;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use pipeline::flow::Side;
use pipeline::packet::L4Proto;

/// The top `limit` flows by bytes, then a line of totals.
pub(crate) fn top_flows(view: &View, limit: usize) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "client",
            "server:port",
            "proto",
            "client → server",
            "server → client",
            "handshake p50/p99",
            "rate",
            "TCP health",
        ]);
    let flows = view.flows();
    for i in 0..flows.len().min(limit) {
        let row = Row::of_flow(view, i);
        let sent = |side: Side| {
            format!(
                "{} pkts, {}",
                row.sent[side].pkts,
                bytes(row.sent[side].bytes)
            )
        };
        let handshake = row.percentiles[Side::Client]
            .map(|p| format!("{} / {}", micros(p.p50), micros(p.p99)))
            .unwrap_or_default();
        let health = if row.proto == L4Proto::Tcp {
            health(&row)
        } else {
            String::new()
        };
        table.add_row(vec![
            Cell::new(name(&row.client)),
            Cell::new(format!(
                "{}:{}",
                name(&row.server),
                row.server_port.unwrap_or(0)
            )),
            Cell::new(row.proto.name()),
            Cell::new(sent(Side::Client)).set_alignment(CellAlignment::Right),
            Cell::new(sent(Side::Server)).set_alignment(CellAlignment::Right),
            Cell::new(handshake).set_alignment(CellAlignment::Right),
            Cell::new(bits_per_second(row.rates.bps.total())).set_alignment(CellAlignment::Right),
            Cell::new(health),
        ]);
    }
    let total_bytes: u64 = flows.iter().map(|f| f.total_bytes()).sum();
    let failed: u64 = flows.iter().map(|f| f.tcp.connections.failed()).sum();
    format!(
        "{table}\n{} of {} flows by bytes; {} in all; {} failed TCP connections (--json for the API's summary, --dump for any answer)\n",
        flows.len().min(limit),
        flows.len(),
        bytes(total_bytes),
        failed
    )
}

/// An endpoint by its pod (or service), else its address.
fn name(e: &EndpointFields) -> String {
    match (&e.pod, &e.svc, e.ip) {
        (Some(pod), _, _) => pod.to_string(),
        (None, Some(svc), _) => format!("svc/{svc}"),
        (None, None, Some(ip)) => ip.to_string(),
        (None, None, None) => "?".to_owned(),
    }
}

/// What went wrong with a TCP flow's connections, briefly.
fn health(row: &Row) -> String {
    let c = row.tcp.connections;
    let mut parts = Vec::new();
    for (what, n) in [
        ("refused", c.refused),
        ("unanswered", c.unanswered),
        ("reset", c.reset),
        ("retransmits", row.tcp.retransmits()),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Bytes in binary units: 512 B, 1.5 KiB, 2.3 MiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate in decimal units, as links are measured: 950 bit/s, 12.4 Mbit/s.
fn bits_per_second(v: f64) -> String {
    const UNITS: [&str; 5] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Microseconds as people read them: 640 µs, 2.1 ms, 1.2 s.
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.1} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(bits_per_second(950.0), "950.0 bit/s");
        assert_eq!(bits_per_second(12_400_000.0), "12.4 Mbit/s");
        assert_eq!(micros(640), "640 µs");
        assert_eq!(micros(2_100), "2.1 ms");
    }
}
