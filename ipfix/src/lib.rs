//! IPFIX export (RFC 7011): flowtap's flows as flow records, sent over UDP
//! or TCP to the collectors users already run (nfcapd, pmacct's nfacctd, ntopng,
//! goflow2, and through them Kafka or ClickHouse pipelines).
//!
//! The exporter follows the snapshots flowtap publishes. A flow gets a
//! record per direction (client to server, server to client) with what it
//! sent since its last record: when it has been running for the active
//! timeout since its last record, when it leaves flowtap's table (idle),
//! and for every flow when the capture ends. With `biflow`, one RFC 5103
//! record for both directions instead (the server's counts in the reverse
//! elements). Records carry IP bytes in `octetDeltaCount`, flowtap's frame
//! bytes in `layer2OctetDeltaCount`, and flowtap's own measurements (TCP
//! health, handshake percentiles, connection outcomes) and the endpoints'
//! Kubernetes names in enterprise elements ([`message::ENTERPRISE_ELEMENTS`],
//! [`message::NAME_ELEMENTS`]); a flow aggregates a
//! client's connections to a server port, so the client's transport port
//! is 0. Messages stay within `--ipfix-mtu`, over UDP or TCP
//! ([`transport`]).
//!
//! With [`exporter::RecordsPer::Connection`], a record is a connection's
//! instead (`--ipfix-per connection`): its 5-tuple, what each direction sent
//! and the TCP flags it used, its own handshake legs and health; cut when
//! it ends (FINs or RST: end of flow; idle; evicted: lack of resources), at
//! least every active timeout while it runs, and when the capture ends. The
//! capture workers keep those records (`TableConfig::conn_records`) and
//! each snapshot brings the ones cut since the last.

#![forbid(unsafe_code)]

pub mod exporter;
pub mod message;
pub mod transport;

pub use exporter::{ExportConfig, ExportStats, Exporter, RecordsPer};
pub use transport::CollectorAddr;

/// Whether something due every `period_ns` (an active timeout, a template
/// refresh), last done `since_ns` ago, is due at a chance to do it that
/// comes `apart_ns` after the one before (a snapshot, a batch): at the
/// chance nearest the period when chances come at a steady pace, a hair
/// before or after it by the clock's jitter. Checking only `since_ns >=
/// period_ns` put it a whole chance late half the time (11 s apart at
/// 10 s); the slack, half the pace, is a hundredth of the period at most,
/// so that irregular chances (a file's snapshots in capture time, a quiet
/// spell between batches) never bring it much early.
pub(crate) fn due_at_nearest(since_ns: u64, apart_ns: u64, period_ns: u64) -> bool {
    let slack = (apart_ns / 2).min(period_ns / 100);
    since_ns.saturating_add(slack) >= period_ns
}
