//! How much a shard's table may hold and for how long: idle timeouts,
//! size limits (and the memory they stand for), and the table's settings.

use super::SideHealth;
use super::conn::Conn;
use super::conn_records::ConnRecordConfig;
use super::conns::ConnRef;
use super::eviction::FlowEntry;
use super::handshake::Window;
use super::rate::Meter;
use super::record::FlowRecord;
use super::side::PerSide;
use super::slab::FlowEntry as SlabEntry;
use crate::time::SECOND;

/// Never expire.
pub const NEVER: u64 = u64::MAX;

/// Idle timeouts in nanoseconds of capture time ([`NEVER`] disables one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// An established TCP connection with no packet for this long is dropped,
    /// and a TCP flow with no connection left and no packet for this long
    /// leaves the flow list.
    pub tcp_idle_ns: u64,
    /// A TCP connection closed by RST or by FIN from both sides.
    pub tcp_closed_ns: u64,
    /// A handshake that never completes (SYN without SYN-ACK, SYN-ACK without ACK).
    pub tcp_handshake_ns: u64,
    /// UDP connections and flows.
    pub udp_idle_ns: u64,
}

impl Timeouts {
    /// Capture files: a flow spans the whole file, as tshark's conversations do.
    pub const NEVER: Timeouts = Timeouts {
        tcp_idle_ns: NEVER,
        tcp_closed_ns: NEVER,
        tcp_handshake_ns: NEVER,
        udp_idle_ns: NEVER,
    };

    /// Live capture defaults.
    pub const LIVE: Timeouts = Timeouts {
        tcp_idle_ns: 300 * SECOND,
        tcp_closed_ns: 10 * SECOND,
        tcp_handshake_ns: 30 * SECOND,
        udp_idle_ns: 60 * SECOND,
    };
}

/// How much state a table may hold. A full table gives up unanswered
/// connections and flows (then closed connections) for new ones; answered,
/// open connections are never evicted: a flood of spoofed packets cannot push
/// out real traffic, only what it could not count is counted instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_flows: usize,
    /// Handshake digests past their exact samples (sketches, the larger
    /// ones); beyond it a digest keeps its latest samples exactly.
    pub max_sketches: usize,
}

impl Limits {
    /// Estimated bytes per tracked connection: its table entry with the
    /// hash table's spare capacity, its entries in the unanswered queue, the
    /// recency queue and the expiry wheel (each with room for as many stale
    /// ones), and its handshake state (a flood keeps every connection in
    /// its handshake).
    pub fn connection_bytes() -> usize {
        // The connection, and its index slots when the index has just
        // doubled.
        size_of::<Conn>()
            + super::conns::Conns::SLOT_BYTES_WORST
            + 6 * size_of::<ConnRef>()
            + super::conn::HANDSHAKE_STATE_BYTES
    }

    /// Estimated bytes per connection's running record, when connections
    /// have records (`TableConfig::conn_records`): its entry in a hash
    /// table of its own, with the spare capacity.
    pub fn connection_record_bytes() -> usize {
        16 * (super::conn_records::RECORD_BYTES + 1) / 7
    }

    /// These limits with each connection also keeping a running record:
    /// fewer connections in the same memory.
    pub fn with_connection_records(self) -> Limits {
        let (each, record) = (
            Limits::connection_bytes(),
            Limits::connection_record_bytes(),
        );
        let scaled = self.max_connections as u128 * each as u128 / (each + record) as u128;
        Limits {
            max_connections: usize::try_from(scaled).unwrap_or(usize::MAX).max(1),
            ..self
        }
    }

    /// Estimated bytes per flow: its table entry, meter, TCP health, index
    /// and queue entry, and its records in the snapshots alive at once (the
    /// one served, the one being built, and the API's view of it), each
    /// with its boxed per-side TCP counts (a flow has them from its first
    /// retransmission, RST or zero window: every flow of a flood against
    /// closed ports).
    pub fn flow_bytes() -> usize {
        size_of::<Option<SlabEntry>>()
            + size_of::<Meter>()
            + size_of::<super::TcpHealth>()
            + size_of::<u32>()
            + 2 * (size_of::<(u32, u32)>() + 1)
            + size_of::<(u32, u32)>()
            + 4 * size_of::<FlowEntry>()
            + 3 * (size_of::<FlowRecord>() + 32)
            + 4 * size_of::<PerSide<SideHealth>>()
    }

    /// Estimated bytes per last record of a flow that left the table,
    /// waiting for the next snapshot ([`TableConfig::ended_flows`]): the
    /// record, without digests, and its boxed per-side TCP counts.
    pub fn ended_record_bytes() -> usize {
        size_of::<super::EndedFlow>() + size_of::<PerSide<SideHealth>>()
    }

    /// Estimated bytes per sketch digest, counting a copy a snapshot may
    /// still hold.
    pub fn sketch_bytes() -> usize {
        2 * super::handshake::sketch_bytes()
    }

    /// Limits that keep the tables within `bytes`: 35% for connections,
    /// 45% for flows, 20% for sketches.
    pub fn for_memory(bytes: usize) -> Limits {
        let share = |percent: usize, each: usize| (bytes / 100 * percent / each).max(1);
        Limits {
            max_connections: share(35, Limits::connection_bytes()),
            max_flows: share(45, Limits::flow_bytes()),
            max_sketches: share(20, Limits::sketch_bytes()),
        }
    }

    pub const UNBOUNDED: Limits = Limits {
        max_connections: usize::MAX,
        max_flows: usize::MAX,
        max_sketches: usize::MAX,
    };

    /// The limits of a shard that takes `share` of the traffic.
    pub fn share(&self, share: Share) -> Limits {
        Limits {
            max_connections: share.of(self.max_connections),
            max_flows: share.of(self.max_flows),
            max_sketches: share.of(self.max_sketches),
        }
    }
}

/// A shard's part of the traffic: shares `before..before + part` of
/// `total`, the shards' parts laid end to end.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub before: u64,
    pub part: u64,
    pub total: u64,
}

impl Share {
    /// Its part of a bound `n`: the shards' parts add up to `n` (rounded
    /// up, `--max-flows 400` over three shards made 401), each at least
    /// one.
    pub fn of(self, n: usize) -> usize {
        let upto =
            |shares: u64| u128::from(n as u64) * u128::from(shares) / u128::from(self.total.max(1));
        let part = upto(self.before + self.part) - upto(self.before);
        usize::try_from(part).unwrap_or(usize::MAX).max(1)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub rtt_window: Window,
    pub rate_window_ns: u64,
    /// First fragments remembered at once per shard.
    pub max_fragments: usize,
    pub fragment_timeout_ns: u64,
    /// Per-connection records (for `--ipfix-per connection`); none kept
    /// when `None`.
    pub conn_records: Option<ConnRecordConfig>,
    /// The last records of flows that leave the table (expired, or given
    /// up to make room), kept for the next snapshot (for IPFIX per flow:
    /// what they counted since the last snapshot would be in no record),
    /// this many at most; none kept when `None`.
    pub ended_flows: Option<usize>,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            timeouts: Timeouts::NEVER,
            limits: Limits::UNBOUNDED,
            rtt_window: Window::Unbounded,
            rate_window_ns: 10 * SECOND,
            max_fragments: 8192,
            fragment_timeout_ns: 30 * SECOND,
            conn_records: None,
            ended_flows: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_parts_of_a_bound_add_up_to_it() {
        for (n, shares) in [
            (400, vec![1, 1, 1]),
            (400, vec![3, 1, 2]),
            (7, vec![2, 2, 2, 2]),
        ] {
            let total = shares.iter().sum();
            let mut before = 0;
            let mut sum = 0;
            for part in shares {
                sum += Share {
                    before,
                    part,
                    total,
                }
                .of(n);
                before += part;
            }
            assert_eq!(sum, n);
        }
        // Unbounded stays unbounded; a part is at least one.
        let all = Share {
            before: 0,
            part: 1,
            total: 1,
        };
        assert_eq!(all.of(usize::MAX), usize::MAX);
        assert_eq!(
            Share {
                before: 0,
                part: 1,
                total: 4
            }
            .of(1),
            1
        );
    }
}
