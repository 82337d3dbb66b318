//! Tables for people at a terminal: the top flows of an API answer,
//! width-aware (comfy-table draws; rather than wrap a row, columns are
//! dropped and names shortened until the rows fit the terminal's width),
//! with sizes and rates in human units. `flowtap -r` prints one from its
//! own view and `flowtap top` from a running flowtap's, both from the same
//! `format=full` answer (`--json` gives machines that JSON).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};
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
    #[serde(default)]
    pub coverage: Option<CoverageAnswer>,
}

/// What a table says of an answer's coverage: who was not seen, and what
/// the capture lost, so that a short table does not read as little traffic.
#[derive(Debug, Deserialize)]
pub(crate) struct CoverageAnswer {
    #[serde(default)]
    pub agents_expected: u64,
    #[serde(default)]
    pub agents_answered: u64,
    #[serde(default)]
    pub agents_missing: Vec<String>,
    #[serde(default)]
    pub capture_drops: u64,
    #[serde(default)]
    pub handoff_drops: u64,
    #[serde(default)]
    pub flows_evicted: u64,
    #[serde(default)]
    pub packets_in_no_flow: u64,
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
    pub ns: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SideStats {
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    pub tcp_handshake_p50_us: Option<u64>,
    pub tcp_handshake_p99_us: Option<u64>,
    pub tcp_retransmits: Option<u64>,
    pub tcp_zero_windows: Option<u64>,
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

/// A table of flows and the lines that follow it.
pub(crate) struct FlowsTable {
    pub table: String,
    /// The totals, then what the coverage says was not seen, if anything.
    pub footer: String,
}

impl std::fmt::Display for FlowsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.table, self.footer)
    }
}

/// The columns a narrow terminal drops, one by one, until the table fits:
/// rate, proto, server → client, handshake. (Rows wrapped over
/// several lines split names mid-token, and an 80 x 24 terminal showed
/// three flows of twenty.) Who talks to whom, what the client sent and the
/// TCP health stay: where they do not fit on one line, names are shortened
/// ([`NAME_WIDTHS`]) rather than the bytes dropped; only a terminal too
/// narrow for that drops client → server too.
const DROPPED_FIRST: [&str; 5] = [
    "rate",
    "proto",
    "server → client",
    "handshake p50/p99",
    "client → server",
];

/// The widths (terminal columns) names are cut to, in turn, where a table
/// does not fit with them whole: a pod's name keeps its start and its
/// replica's suffix (`checkout…5-w2r6x` at 16).
const NAME_WIDTHS: [Option<usize>; 5] = [None, Some(28), Some(24), Some(20), Some(16)];

/// The table's columns, in order.
const COLUMNS: [&str; 8] = [
    "client",
    "server:port",
    "proto",
    "client → server",
    "server → client",
    "handshake p50/p99",
    "rate",
    "TCP health",
];

/// The flows of `answer` in a table, `width` columns wide (the terminal's,
/// if not given), then a line of totals from `summary` (ending with `hint`:
/// where to find more), then what was not seen.
pub(crate) fn top_flows(
    answer: &FlowsAnswer,
    summary: &SummaryAnswer,
    hint: &str,
    width: Option<u16>,
) -> FlowsTable {
    // The width to fit: the terminal's (none when printing to a pipe or a
    // file, where nothing is dropped or cut).
    let fit_to = {
        let mut probe = Table::new();
        if let Some(width) = width {
            probe.set_width(width);
        }
        probe.width().map(usize::from).filter(|&w| w > 0)
    };
    let fits = |rows: &Measured, layout: Layout| {
        fit_to.is_none_or(|w| width_needed(&rows.widest, layout) <= w)
    };
    // The rows with names cut to each of NAME_WIDTHS in turn, measured
    // once for every layout tried.
    let rows_by_width: Vec<Measured> = NAME_WIDTHS
        .iter()
        .map(|w| Measured::of(rows_of(answer, *w, fit_to.is_some())))
        .collect();
    let kept_bytes = DROPPED_FIRST.len() - 1;
    let layouts = |health_wraps, hidden: std::ops::RangeInclusive<usize>| {
        hidden.map(move |hidden| Layout {
            hidden,
            health_wraps,
            squeezed: false,
        })
    };
    // First every layout whose cells all stay on one line, whole names and
    // more columns first, the bytes the client sent kept.
    let one_line = rows_by_width.iter().find_map(|rows| {
        layouts(false, 0..=kept_bytes)
            .find(|l| fits(rows, *l))
            .map(|l| (rows, l))
    });
    // Then those whose TCP health wraps, the bytes still kept: the one
    // whose table is shortest (lines rendered for its first rows), a
    // `top` screen showing the most flows.
    let wrapped = || {
        let candidates = rows_by_width.iter().flat_map(|rows| {
            layouts(true, 0..=kept_bytes)
                .filter(|l| fits(rows, *l))
                .map(move |l| (rows, l))
        });
        candidates.min_by_key(|(rows, l)| lines_of(&rows.rows, *l, width))
    };
    // Then (a terminal narrower than about 60 columns) names and health,
    // the shortest table again.
    let all = DROPPED_FIRST.len()..=DROPPED_FIRST.len();
    let names_only = || {
        let candidates = rows_by_width.iter().flat_map(|rows| {
            layouts(false, all.clone())
                .chain(layouts(true, all.clone()))
                .filter(|l| fits(rows, *l))
                .map(move |l| (rows, l))
        });
        candidates.min_by_key(|(rows, l)| lines_of(&rows.rows, *l, width))
    };
    // Nothing fits (a tmux pane of 40 columns): the narrowest, every cell
    // wrapped within the terminal's width, names split over lines rather
    // than every line of the table wrapped by the terminal.
    let (rows, layout) = one_line
        .or_else(wrapped)
        .or_else(names_only)
        .map(|(rows, l)| (rows.rows.clone(), l))
        .unwrap_or_else(|| {
            let narrowest = rows_by_width.last().expect("name widths").rows.clone();
            let layout = Layout {
                hidden: DROPPED_FIRST.len(),
                health_wraps: true,
                squeezed: true,
            };
            (narrowest, layout)
        });
    let table = table_of(rows, layout, width);
    let c = &summary.tcp_connections;
    let mut footer = format!(
        "{} of {} flows by bytes; {} in all; {} failed TCP connections ({hint})\n",
        answer.flows.len(),
        answer.total,
        bytes(summary.total_bytes),
        c.refused
            .saturating_add(c.unanswered)
            .saturating_add(c.reset)
    );
    if let Some(coverage) = &answer.coverage {
        footer.push_str(&not_seen(coverage));
    }
    FlowsTable {
        table: table.to_string(),
        footer,
    }
}

/// A row's cells, one for each of [`COLUMNS`].
type Row = [String; COLUMNS.len()];

/// Rows whose rendered lines measure a wrapped layout: enough to tell
/// layouts apart, few enough that a `top --limit 100000` stays quick.
const LINES_SAMPLE: usize = 50;

/// The lines a table of `rows` (its first [`LINES_SAMPLE`]) takes in
/// `layout`.
fn lines_of(rows: &[Row], layout: Layout, width: Option<u16>) -> usize {
    let sample = rows[..rows.len().min(LINES_SAMPLE)].to_vec();
    table_of(sample, layout, width).lines().count()
}

/// The columns `text` takes in a terminal (a CJK character two, a
/// combining mark none), as comfy-table lays it out: its widest line.
pub(crate) fn columns(text: &str) -> usize {
    text.split('\n')
        .map(unicode_width::UnicodeWidthStr::width)
        .max()
        .unwrap_or(0)
}

/// The column of TCP health, the one whose text may wrap.
const HEALTH: usize = COLUMNS.len() - 1;

/// The narrowest the TCP health column gets where the terminal is narrow:
/// its longest word ("retransmits,") whole, its text wrapped within it.
const HEALTH_WIDTH: usize = 12;

/// The cells of `answer`'s flows, names cut to `name_width`; an address
/// that tells two rows apart on a line of its own where `address_apart`
/// (fitting a terminal's width; piped, a row stays one line, for grep).
fn rows_of(answer: &FlowsAnswer, name_width: Option<usize>, address_apart: bool) -> Vec<Row> {
    let namings = namings(answer);
    let sent = |s: &SideStats| {
        let plural = if s.tx_pkts == 1 { "" } else { "s" };
        format!("{} pkt{plural}, {}", s.tx_pkts, bytes(s.tx_bytes))
    };
    answer
        .flows
        .iter()
        .zip(namings)
        .map(|(row, naming)| {
            let c = &row.client_stats;
            let handshake = match (c.tcp_handshake_p50_us, c.tcp_handshake_p99_us) {
                (Some(p50), Some(p99)) => format!("{} / {}", micros(p50), micros(p99)),
                _ => String::new(),
            };
            [
                label(&row.client, naming, name_width, None, address_apart),
                label(
                    &row.server,
                    naming,
                    name_width,
                    Some(row.server.port.unwrap_or(0)),
                    address_apart,
                ),
                sanitized(&row.proto),
                sent(&row.client_stats),
                sent(&row.server_stats),
                handshake,
                bits_per_second(row.totals.bps),
                row.tcp_connections
                    .as_ref()
                    .map(|c| health(row, c))
                    .unwrap_or_default(),
            ]
        })
        .collect()
}

/// Which columns a table shows, and how.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// The first `hidden` of [`DROPPED_FIRST`] are hidden.
    hidden: usize,
    /// The TCP health's text wraps within [`HEALTH_WIDTH`] (no other
    /// cell wraps, unless squeezed).
    health_wraps: bool,
    /// Every cell wraps as comfy-table makes the table fit: the last
    /// resort.
    squeezed: bool,
}

impl Layout {
    fn hides(&self, column: usize) -> bool {
        DROPPED_FIRST[..self.hidden].contains(&COLUMNS[column])
    }
}

/// Rows, and each column's widest cell (its header's included), in
/// terminal columns.
struct Measured {
    rows: Vec<Row>,
    widest: [usize; COLUMNS.len()],
}

impl Measured {
    fn of(rows: Vec<Row>) -> Measured {
        let widest = std::array::from_fn(|i| {
            rows.iter()
                .map(|r| columns(&r[i]))
                .chain([columns(COLUMNS[i])])
                .max()
                .unwrap_or(0)
        });
        Measured { rows, widest }
    }
}

/// The terminal columns a table of rows whose columns' widest cells are
/// `widest` takes in `layout`: each shown column's widest cell and a space
/// either side, and the borders.
fn width_needed(widest: &[usize; COLUMNS.len()], layout: Layout) -> usize {
    let shown: Vec<usize> = (0..COLUMNS.len()).filter(|i| !layout.hides(*i)).collect();
    let cells: usize = shown
        .iter()
        .map(|&i| {
            let w = widest[i];
            2 + if i == HEALTH && layout.health_wraps {
                w.min(HEALTH_WIDTH)
            } else {
                w
            }
        })
        .sum();
    cells + shown.len() + 1
}

/// The table of `rows` in `layout`, `width` columns wide (the terminal's
/// if not given).
fn table_of(rows: Vec<Row>, layout: Layout, width: Option<u16>) -> Table {
    let mut table = Table::new();
    if let Some(width) = width {
        table.set_width(width);
    }
    // A terminal that says it is 0 columns wide (a pty not sized yet:
    // `script`, `kubectl exec -t` before its first resize) is taken for a
    // pipe: fitted to 0 columns, each cell went a character a line.
    let arrangement = match table.width() {
        Some(0) => ContentArrangement::Disabled,
        _ => ContentArrangement::Dynamic,
    };
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(arrangement)
        .set_header(COLUMNS);
    let health_width = rows
        .iter()
        .map(|r| columns(&r[HEALTH]))
        .max()
        .unwrap_or(0)
        .min(HEALTH_WIDTH);
    // Counts read right-aligned.
    let numbers = 3..HEALTH;
    for row in rows {
        table.add_row(row.into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::new(text);
            if numbers.contains(&i) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    for i in 0..COLUMNS.len() {
        let constraint = if layout.hides(i) {
            ColumnConstraint::Hidden
        } else if layout.squeezed {
            continue;
        } else if i == HEALTH && layout.health_wraps {
            ColumnConstraint::LowerBoundary(Width::Fixed(health_width as u16))
        } else {
            ColumnConstraint::ContentWidth
        };
        if let Some(c) = table.column_mut(i) {
            c.set_constraint(constraint);
        }
    }
    table
}

/// `name` cut to `width` terminal columns, if wider, by its middle: its
/// start and its end (a pod's replica suffix) kept, an ellipsis between.
fn shortened(name: String, width: Option<usize>) -> String {
    use unicode_width::UnicodeWidthChar;
    let Some(width) = width else { return name };
    if columns(&name) <= width || width < 3 {
        return name;
    }
    // As many characters from each end as fit their share of the columns.
    let take = |chars: &mut dyn Iterator<Item = char>, budget: usize| {
        let mut used = 0;
        let mut kept = Vec::new();
        for c in chars {
            let w = c.width().unwrap_or(0);
            if used + w > budget {
                break;
            }
            used += w;
            kept.push(c);
        }
        kept
    };
    let end_columns = (width - 1) / 2;
    let head: String = take(&mut name.chars(), width - 1 - end_columns)
        .into_iter()
        .collect();
    let tail: String = take(&mut name.chars().rev(), end_columns)
        .into_iter()
        .rev()
        .collect();
    format!("{head}…{tail}")
}

/// Lines on what the answer does not hold: agents that did not answer,
/// frames the capture lost, flows evicted. Empty when nothing was missed.
fn not_seen(c: &CoverageAnswer) -> String {
    let mut out = String::new();
    if !c.agents_missing.is_empty() {
        out.push_str(&format!(
            "NOT SEEN: {} of {} agents answered; missing {} (their traffic is not in this table)\n",
            c.agents_answered,
            c.agents_expected,
            c.agents_missing
                .iter()
                .map(|a| sanitized(a))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Saturating: a sum a hostile server wraps to 0 would hide the line.
    if c.capture_drops
        .saturating_add(c.handoff_drops)
        .saturating_add(c.flows_evicted)
        .saturating_add(c.packets_in_no_flow)
        > 0
    {
        out.push_str(&format!(
            "LOST: {} frames dropped by the capture, {} at hand-off, {} flows evicted, {} packets in no flow (counts are low)\n",
            c.capture_drops, c.handoff_drops, c.flows_evicted, c.packets_in_no_flow
        ));
    }
    out
}

/// How fully a row names its endpoints: by pod (or service, or address)
/// alone; with their namespace; with their namespace and address too. A
/// row takes more words only where fewer would read as another row (a pod
/// of the same name in another namespace, a StatefulSet's `postgres-0` in
/// `prod` and `staging`; the IPv4 and IPv6 flows of one pair of pods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Naming {
    Name,
    Namespaced,
    WithAddress,
}

/// Each row's [`Naming`]: the fewest words that tell it from every other
/// row (judged on whole names, so that a row reads the same at every
/// width).
fn namings(answer: &FlowsAnswer) -> Vec<Naming> {
    let mut namings = vec![Naming::Name; answer.flows.len()];
    for more in [Naming::Namespaced, Naming::WithAddress] {
        let read: Vec<(String, String, &str)> = answer
            .flows
            .iter()
            .zip(&namings)
            .map(|(row, &n)| {
                (
                    label(&row.client, n, None, None, false),
                    label(
                        &row.server,
                        n,
                        None,
                        Some(row.server.port.unwrap_or(0)),
                        false,
                    ),
                    row.proto.as_str(),
                )
            })
            .collect();
        let mut times: std::collections::HashMap<&(String, String, &str), usize> =
            std::collections::HashMap::new();
        for r in &read {
            *times.entry(r).or_default() += 1;
        }
        for (naming, r) in namings.iter_mut().zip(&read) {
            if times[r] > 1 {
                *naming = more;
            }
        }
    }
    namings
}

/// An endpoint as a row names it (a server with its `port`): its name cut
/// to `name_width`, with as much more as `naming` says. Names are cut,
/// addresses never (a cut address names another).
fn label(
    e: &Endpoint,
    naming: Naming,
    name_width: Option<usize>,
    port: Option<u16>,
    address_apart: bool,
) -> String {
    let named = e.pod.is_some() || e.svc.is_some();
    if !named {
        let address = name(e);
        return match port {
            Some(port) => with_port(&address, port),
            None => address,
        };
    }
    let mut label = String::new();
    if let Some(ns) = e.ns.as_deref().filter(|_| naming >= Naming::Namespaced) {
        label.push_str(&sanitized(ns));
        label.push('/');
    }
    label.push_str(&shortened(name(e), name_width));
    if let Some(port) = port {
        label.push_str(&format!(":{port}"));
    }
    // In a terminal on a line of its own: an address is never cut, and on
    // the name's line it widened the column past what 80 or 100 columns
    // hold, so every other column gave way.
    if let Some(ip) = e.ip.as_deref().filter(|_| naming == Naming::WithAddress) {
        let apart = if address_apart { '\n' } else { ' ' };
        label.push_str(&format!("{apart}({})", sanitized(ip)));
    }
    label
}

/// An endpoint by its pod (or service), else its address.
fn name(e: &Endpoint) -> String {
    match (&e.pod, &e.svc, &e.ip) {
        (Some(pod), _, _) => sanitized(pod),
        (None, Some(svc), _) => format!("svc/{}", sanitized(svc)),
        (None, None, Some(ip)) => sanitized(ip),
        (None, None, None) => "?".to_owned(),
    }
}

/// A server's address and its port: `[2001:db8::1]:443` for an IPv6
/// address, whose own colons would swallow the port.
fn with_port(name: &str, port: u16) -> String {
    if name.contains(':') {
        format!("[{name}]:{port}")
    } else {
        format!("{name}:{port}")
    }
}

/// Whether `c` may not reach a terminal as it is: a control character (an
/// escape sequence begins with one) or a bidirectional override or
/// isolate, which reorders what follows it on the line.
fn unsafe_on_a_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// A JSON body for a terminal (`--dump`, `--json`, `top --json`): every
/// character [`unsafe_on_a_terminal`] written as its JSON escape
/// (`\u001b`), the same document to any JSON reader and nothing a
/// terminal acts on (serde escapes C0 controls in strings, not C1 ones or
/// bidirectional marks, and a hostile server behind `top --url` escapes
/// nothing). JSON's own whitespace stays. Piped, a body goes as it came.
pub(crate) fn json_for_terminal(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .map(|c| match c {
            // A raw carriage return (which JSON never needs) would move
            // the cursor back over the line.
            '\n' | '\t' => c.to_string(),
            c if unsafe_on_a_terminal(c) => format!("\\u{:04x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// Text for a terminal: control characters and bidirectional overrides (an
/// escape sequence in a name from a hand-made inventory, or a hostile
/// server behind `top --url`) shown escaped rather than sent to the
/// terminal.
fn sanitized(text: &str) -> String {
    if !text.chars().any(unsafe_on_a_terminal) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if unsafe_on_a_terminal(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Lines for a terminal, each [`sanitized`]: a whole screen of `top`, with
/// every field the server sent in it (names, protocols, an error's body).
pub(crate) fn for_terminal(text: &str) -> String {
    text.split('\n')
        .map(sanitized)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What went wrong with a TCP flow's connections, briefly.
fn health(row: &FullRow, c: &Connections) -> String {
    let both = |of: fn(&SideStats) -> Option<u64>| {
        of(&row.client_stats)
            .unwrap_or(0)
            .saturating_add(of(&row.server_stats).unwrap_or(0))
    };
    let mut parts = Vec::new();
    // "refused", "unanswered" and "reset" say what happened to so many
    // connections; a retransmit or a zero window is a thing, counted:
    // (one, many).
    for ((one, many), n) in [
        (("refused", "refused"), c.refused),
        (("unanswered", "unanswered"), c.unanswered),
        (("reset", "reset"), c.reset),
        (("retransmit", "retransmits"), both(|s| s.tcp_retransmits)),
        (
            ("zero window", "zero windows"),
            both(|s| s.tcp_zero_windows),
        ),
    ] {
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
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
    // Up a unit where one decimal would round to 1024 (1048575 B was
    // "1024.0 KiB").
    while v >= 1023.95 && unit + 1 < UNITS.len() {
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
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Microseconds as people read them: 640 µs, 2.1 ms, 1.2 s.
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        // 999,960 µs is 1.0 s, not "1000.0 ms".
        1_000..999_950 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.1} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: Option<&str>, pod: Option<&str>, port: Option<u16>) -> Endpoint {
        Endpoint {
            ip: ip.map(Into::into),
            port,
            pod: pod.map(Into::into),
            svc: None,
            ns: None,
        }
    }

    /// Rows that would read the same say more: the namespace where pods
    /// of one name are in two, and the addresses where even that is the
    /// same (a dual-stack pair's IPv4 and IPv6 flows). The others keep
    /// their names alone.
    #[test]
    fn rows_that_would_read_the_same_say_what_tells_them_apart() {
        let row = |client: (&str, &str, &str), server: (&str, &str, &str)| {
            serde_json::json!({
                "proto": "tcp",
                "client": {"ip": client.0, "pod": client.1, "ns": client.2},
                "server": {"ip": server.0, "pod": server.1, "ns": server.2, "port": 5432},
                "client_stats": {"tx_pkts": 1, "tx_bytes": 1},
                "server_stats": {"tx_pkts": 1, "tx_bytes": 1},
                "totals": {"bps": 1.0},
            })
        };
        let answer: FlowsAnswer = serde_json::from_value(serde_json::json!({
            "flows": [
                row(("198.18.0.1", "worker-0", "prod"), ("198.18.1.1", "postgres-0", "prod")),
                row(("198.18.0.2", "worker-0", "staging"), ("198.18.1.2", "postgres-0", "staging")),
                row(("198.18.0.3", "web-1", "shop"), ("198.18.1.3", "redis-0", "data")),
                row(("2001:db8::3", "web-1", "shop"), ("2001:db8::1:3", "redis-0", "data")),
                row(("198.18.0.4", "web-2", "shop"), ("198.18.1.3", "redis-0", "data")),
            ],
            "total": 5,
        }))
        .unwrap();
        let names: Vec<(String, String)> = rows_of(&answer, None, true)
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        let pair = |c: &str, s: &str| (c.to_owned(), s.to_owned());
        assert_eq!(
            names,
            [
                pair("prod/worker-0", "prod/postgres-0:5432"),
                pair("staging/worker-0", "staging/postgres-0:5432"),
                pair(
                    "shop/web-1\n(198.18.0.3)",
                    "data/redis-0:5432\n(198.18.1.3)"
                ),
                pair(
                    "shop/web-1\n(2001:db8::3)",
                    "data/redis-0:5432\n(2001:db8::1:3)"
                ),
                pair("web-2", "redis-0:5432"),
            ]
        );
        // Cut to fit, a name keeps what tells it apart.
        let cut = rows_of(&answer, Some(6), true);
        assert_eq!(cut[1][0], "staging/wor…-0");
        assert_eq!(cut[3][1], "data/red…-0:5432\n(2001:db8::1:3)");
        // Piped (nothing fitted), a row stays on one line, for grep.
        let piped = rows_of(&answer, None, false);
        assert_eq!(piped[2][0], "shop/web-1 (198.18.0.3)");
    }

    /// In a narrow terminal each flow still takes one line: the columns
    /// that matter least give way, then names are shortened by their middle,
    /// and what the client sent stays. (At 80 columns the table had kept
    /// only the names and the health, and still wrapped the demo's names.)
    #[test]
    fn narrow_tables_drop_columns_and_shorten_names_rather_than_wrap_rows() {
        let answer = |client: &str, server: &str| -> FlowsAnswer {
            let row = |i: usize| {
                serde_json::json!({
                    "proto": "tcp",
                    "client": {"ip": "198.18.0.1", "pod": format!("{client}-{i}")},
                    "server": {"ip": "198.18.0.2", "pod": server, "port": 5432},
                    "client_stats": {"tx_pkts": 12345, "tx_bytes": 9876543,
                                     "tcp_handshake_p50_us": 1234, "tcp_handshake_p99_us": 56789},
                    "server_stats": {"tx_pkts": 6543, "tx_bytes": 1234567},
                    "totals": {"bps": 12345678.9},
                    "tcp_connections": {"refused": 2, "unanswered": 0, "reset": 0,
                                        "established": 40, "closed": 30, "open": 4}
                })
            };
            serde_json::from_value(serde_json::json!({
                "flows": (0..20).map(row).collect::<Vec<_>>(), "total": 20
            }))
            .unwrap()
        };
        let summary: SummaryAnswer = serde_json::from_value(serde_json::json!({
            "total_bytes": 1, "tcp_connections": {"refused": 0, "unanswered": 0, "reset": 0}
        }))
        .unwrap();
        let header = |t: &FlowsTable| t.table.lines().nth(1).unwrap().to_owned();
        let fits = |t: &FlowsTable, width: usize| {
            t.table.lines().count() == 24 && t.table.lines().all(|l| columns(l) <= width)
        };
        let short = answer("frontend-7d9f8b6c5d-q2w3e", "postgres-0");
        // A terminal that says it is 0 columns wide (a pty not sized yet)
        // is taken for a pipe: every column, a row a line.
        let unsized_tty = top_flows(&short, &summary, "", Some(0));
        assert_eq!(
            unsized_tty.table.lines().count(),
            24,
            "{}",
            unsized_tty.table
        );
        assert!(
            header(&unsized_tty).contains("rate"),
            "{}",
            unsized_tty.table
        );
        let wide = top_flows(&short, &summary, "", Some(250));
        assert!(fits(&wide, 250), "{}", wide.table);
        assert!(header(&wide).contains("rate"), "{}", wide.table);
        // The README's 80 x 24 terminal: names shortened by their middle
        // (their replica's suffix kept) beside what the client sent.
        let narrow = top_flows(&short, &summary, "", Some(80));
        assert!(fits(&narrow, 80), "{}", narrow.table);
        assert!(!header(&narrow).contains("rate"), "{}", narrow.table);
        assert!(
            header(&narrow).contains("client → server"),
            "{}",
            narrow.table
        );
        assert!(
            narrow.table.contains("12345 pkts, 9.4 MiB"),
            "{}",
            narrow.table
        );
        assert!(
            narrow.table.contains("frontend-7…-q2w3e-19")
                && narrow.table.contains("postgres-0:5432"),
            "{}",
            narrow.table
        );
        // Wide enough, whole, with more columns.
        let long = answer("checkout-84c6b7d9f5-w2r6x", "api-gateway-5c8d7f9b6-q2w3e");
        let wider = top_flows(&long, &summary, "", Some(140));
        assert!(fits(&wider, 140), "{}", wider.table);
        assert!(header(&wider).contains("handshake"), "{}", wider.table);
        assert!(
            wider.table.contains("checkout-84c6b7d9f5-w2r6x-19")
                && wider.table.contains("api-gateway-5c8d7f9b6-q2w3e:5432"),
            "{}",
            wider.table
        );
        // Names in CJK take two columns a character: still within 80.
        let cjk = answer("結帳服務-84c6b7d9f5-w2r6x", "支付閘道-5c8d7f9b6-q2w3e");
        let narrow = top_flows(&cjk, &summary, "", Some(80));
        assert!(fits(&narrow, 80), "{}", narrow.table);
        // A long health: a wider terminal never gives a longer table once
        // what the client sent is shown (a wrapped health took 37 lines at
        // 122 columns, 22 at 117).
        let mut troubled = answer("checkout-84c6b7d9f5-w2r6x", "api-gateway-5c8d7f9b6-q2w3e");
        for f in &mut troubled.flows {
            f.tcp_connections = Some(Connections {
                refused: 2,
                unanswered: 1,
                reset: 3,
            });
        }
        let mut last = usize::MAX;
        for width in 60..=220 {
            let t = top_flows(&troubled, &summary, "", Some(width));
            assert!(
                t.table.lines().all(|l| columns(l) <= usize::from(width)),
                "{width}: {}",
                t.table
            );
            let lines = t.table.lines().count();
            if !header(&t).contains("client → server") {
                continue;
            }
            assert!(
                lines <= last,
                "{width} columns: {lines} lines, {last} at one fewer\n{}",
                t.table
            );
            last = lines;
        }
        // Too narrow for names and bytes: names and health, as before.
        let tiny = top_flows(&short, &summary, "", Some(60));
        assert!(!header(&tiny).contains("client → server"), "{}", tiny.table);
        // Too narrow for that: cells wrap within the width, no line of the
        // table wider than the terminal (each took two of its lines).
        for width in [30, 45] {
            let squeezed = top_flows(&long, &summary, "", Some(width));
            assert!(
                squeezed
                    .table
                    .lines()
                    .all(|l| columns(l) <= usize::from(width)),
                "{width}:\n{}",
                squeezed.table
            );
        }
    }

    #[test]
    fn names_are_shortened_by_their_middle() {
        let cut = |name: &str, width| shortened(name.to_owned(), Some(width));
        assert_eq!(cut("checkout-84c6b7d9f5-w2r6x", 16), "checkout…5-w2r6x");
        assert_eq!(cut("checkout-84c6b7d9f5-w2r6x", 16).chars().count(), 16);
        assert_eq!(cut("redis-0", 16), "redis-0");
        assert_eq!(cut("ünïcödé-nämé-über-läng", 9), "ünïc…läng");
        assert_eq!(shortened("redis-0".to_owned(), None), "redis-0");
        // By the columns a terminal gives them: a CJK character takes two.
        let wide = cut("結帳服務-84c6b7d9f5-w2r6x", 16);
        assert_eq!(wide, "結帳服務…5-w2r6x");
        assert_eq!(columns(&wide), 16);
    }

    #[test]
    fn units_round_up_to_the_next_one() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1_048_575), "1.0 MiB");
        assert_eq!(bytes(1_048_524), "1023.9 KiB");
        assert_eq!(micros(999_960), "1.0 s");
        assert_eq!(micros(999_940), "999.9 ms");
        assert_eq!(bits_per_second(999_960.0), "1.0 Mbit/s");
        assert_eq!(bits_per_second(950.0), "950.0 bit/s");
    }

    #[test]
    fn names_for_a_terminal() {
        let server = |e: Endpoint| label(&e, Naming::Name, None, Some(e.port.unwrap_or(0)), false);
        assert_eq!(
            server(endpoint(Some("64:ff9b::9765:798c"), None, Some(443))),
            "[64:ff9b::9765:798c]:443"
        );
        assert_eq!(
            server(endpoint(Some("198.18.0.1"), None, Some(53))),
            "198.18.0.1:53"
        );
        assert_eq!(
            server(endpoint(Some("198.18.0.1"), Some("redis-0"), Some(6379))),
            "redis-0:6379"
        );
        assert_eq!(
            name(&endpoint(None, Some("redis\u{1b}[31mRED"), None)),
            "redis\\u{1b}[31mRED"
        );
        // A right-to-left override would reorder the rest of the line, and
        // so would a right-to-left mark.
        assert_eq!(
            name(&endpoint(None, Some("cod\u{202e}exe.sh"), None)),
            "cod\\u{202e}exe.sh"
        );
        assert_eq!(
            name(&endpoint(None, Some("a\u{200f}b"), None)),
            "a\\u{200f}b"
        );
        // JSON for a terminal: the same document, no escape sequence in it.
        let hostile = "{\"pod\":\"x\u{1b}]0;PWNED\u{7}\u{9b}2J\u{202e}\"}\n";
        let safe = json_for_terminal(hostile.as_bytes());
        assert_eq!(
            safe,
            "{\"pod\":\"x\\u001b]0;PWNED\\u0007\\u009b2J\\u202e\"}\n"
        );
        assert_eq!(json_for_terminal(b"{}\r\n"), "{}\\u000d\n");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            serde_json::from_str::<serde_json::Value>(
                &hostile
                    .replace('\u{1b}', "\\u001b")
                    .replace('\u{7}', "\\u0007")
            )
            .unwrap()
        );
        // A whole screen: its lines kept, every escape in them shown (a
        // protocol, a window title set through OSC, an error's body).
        assert_eq!(
            for_terminal("tcp\u{1b}[31m\n\u{1b}]0;PWNED\u{7}\n502: <b>\u{9b}2J</b>"),
            "tcp\\u{1b}[31m\n\\u{1b}]0;PWNED\\u{7}\n502: <b>\\u{9b}2J</b>"
        );
    }

    /// The table reads the coverage the API writes, every field (each
    /// defaults to nothing, so a field renamed on one side would read as
    /// no loss).
    #[test]
    fn the_coverage_read_is_the_coverage_written() {
        use api::rest::coverage::{CoverageJson, LossesJson};
        let written = CoverageJson {
            agents_expected: 3,
            agents_answered: 2,
            agents_missing: vec!["http://198.18.0.7:8898".into()],
            losses: LossesJson {
                capture_drops: 5,
                handoff_drops: 6,
                flows_evicted: 7,
                packets_in_no_flow: 8,
            },
            agents: vec![],
        };
        let read: CoverageAnswer =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        assert_eq!(
            (
                read.agents_expected,
                read.agents_answered,
                read.agents_missing,
                read.capture_drops,
                read.handoff_drops,
                read.flows_evicted,
                read.packets_in_no_flow
            ),
            (3, 2, written.agents_missing.clone(), 5, 6, 7, 8)
        );
    }

    #[test]
    fn what_was_not_seen_is_said() {
        let mut c = CoverageAnswer {
            agents_expected: 2,
            agents_answered: 2,
            agents_missing: vec![],
            capture_drops: 0,
            handoff_drops: 0,
            flows_evicted: 0,
            packets_in_no_flow: 0,
        };
        assert_eq!(not_seen(&c), "");
        c.agents_answered = 1;
        c.agents_missing = vec!["http://198.18.0.7:8898".into()];
        c.capture_drops = 5;
        assert_eq!(
            not_seen(&c),
            "NOT SEEN: 1 of 2 agents answered; missing http://198.18.0.7:8898 (their traffic is not in this table)\n\
             LOST: 5 frames dropped by the capture, 0 at hand-off, 0 flows evicted, 0 packets in no flow (counts are low)\n"
        );
    }

    #[test]
    fn what_went_wrong_is_said_in_words() {
        let row = |client: u64, server: u64| -> FullRow {
            // Retransmits `n`, and as many zero windows less one.
            let side = |n: u64| {
                serde_json::json!({"tx_pkts": 1, "tx_bytes": 1, "tcp_retransmits": n,
                                   "tcp_zero_windows": n.saturating_sub(1)})
            };
            serde_json::from_value(serde_json::json!({
                "proto": "tcp", "client": {}, "server": {},
                "client_stats": side(client), "server_stats": side(server),
                "totals": {"bps": 0.0}
            }))
            .unwrap()
        };
        let fine = Connections {
            refused: 0,
            unanswered: 0,
            reset: 0,
        };
        let refused = Connections { refused: 2, ..fine };
        assert_eq!(health(&row(0, 0), &fine), "ok");
        assert_eq!(health(&row(1, 0), &fine), "1 retransmit");
        assert_eq!(
            health(&row(1, 2), &refused),
            "2 refused, 3 retransmits, 1 zero window"
        );
        assert_eq!(health(&row(3, 2), &fine), "5 retransmits, 3 zero windows");
    }

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
