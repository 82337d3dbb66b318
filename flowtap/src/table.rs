//! Tables for people at a terminal: the top flows of an API answer,
//! width-aware (comfy-table measures the terminal and wraps), with sizes and
//! rates in human units. `flowtap -r` prints one from its own view and
//! `flowtap top` from a running flowtap's, both from the same `format=full`
//! answer (`--json` gives machines that JSON).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Deserialize;

/// The query of the answer a table shows: the heaviest flows, every field.
pub(crate) fn query(limit: usize) -> String {
    format!("format=full&sort=bytes&limit={limit}")
}

/// What a table reads of `GET /mcp/flows?format=full`.
#[derive(Debug, Deserialize)]
pub(crate) struct FlowsAnswer {
    pub flows: Vec<FullRow>,
    pub total: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FullRow {
    pub proto: String,
    pub client: Endpoint,
    pub server: Endpoint,
    pub client_stats: SideStats,
    pub server_stats: SideStats,
    pub totals: Totals,
    pub tcp_connections: Option<Connections>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Endpoint {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub pod: Option<String>,
    pub svc: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SideStats {
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    pub tcp_handshake_p50_us: Option<u64>,
    pub tcp_handshake_p99_us: Option<u64>,
    pub tcp_retransmits: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Totals {
    pub bps: f64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Connections {
    pub refused: u64,
    pub unanswered: u64,
    pub reset: u64,
}

/// What a table reads of `GET /mcp/flows/summary`.
#[derive(Debug, Deserialize)]
pub(crate) struct SummaryAnswer {
    pub total_bytes: u64,
    pub tcp_connections: Connections,
}

/// The flows of `answer` in a table, then a line of totals from `summary`.
pub(crate) fn top_flows(answer: &FlowsAnswer, summary: &SummaryAnswer) -> String {
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
    for row in &answer.flows {
        let sent = |s: &SideStats| format!("{} pkts, {}", s.tx_pkts, bytes(s.tx_bytes));
        let c = &row.client_stats;
        let handshake = match (c.tcp_handshake_p50_us, c.tcp_handshake_p99_us) {
            (Some(p50), Some(p99)) => format!("{} / {}", micros(p50), micros(p99)),
            _ => String::new(),
        };
        table.add_row(vec![
            Cell::new(name(&row.client)),
            Cell::new(format!(
                "{}:{}",
                name(&row.server),
                row.server.port.unwrap_or(0)
            )),
            Cell::new(&row.proto),
            Cell::new(sent(&row.client_stats)).set_alignment(CellAlignment::Right),
            Cell::new(sent(&row.server_stats)).set_alignment(CellAlignment::Right),
            Cell::new(handshake).set_alignment(CellAlignment::Right),
            Cell::new(bits_per_second(row.totals.bps)).set_alignment(CellAlignment::Right),
            Cell::new(
                row.tcp_connections
                    .as_ref()
                    .map(|c| health(row, c))
                    .unwrap_or_default(),
            ),
        ]);
    }
    let c = &summary.tcp_connections;
    format!(
        "{table}\n{} of {} flows by bytes; {} in all; {} failed TCP connections (--json for the API's summary, --dump for any answer)\n",
        answer.flows.len(),
        answer.total,
        bytes(summary.total_bytes),
        c.refused + c.unanswered + c.reset
    )
}

/// An endpoint by its pod (or service), else its address.
fn name(e: &Endpoint) -> String {
    match (&e.pod, &e.svc, &e.ip) {
        (Some(pod), _, _) => pod.clone(),
        (None, Some(svc), _) => format!("svc/{svc}"),
        (None, None, Some(ip)) => ip.clone(),
        (None, None, None) => "?".to_owned(),
    }
}

/// What went wrong with a TCP flow's connections, briefly.
fn health(row: &FullRow, c: &Connections) -> String {
    let retransmits = row.client_stats.tcp_retransmits.unwrap_or(0)
        + row.server_stats.tcp_retransmits.unwrap_or(0);
    let mut parts = Vec::new();
    for (what, n) in [
        ("refused", c.refused),
        ("unanswered", c.unanswered),
        ("reset", c.reset),
        ("retransmits", retransmits),
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
