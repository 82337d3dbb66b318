//! What a shard's table counts about itself: what it expired, evicted or
//! could not count, and its occupancy.

/// What the table counts about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounters {
    /// Later fragments whose first fragment was never seen (or expired).
    pub fragments_unmatched: u64,
    /// First fragments not remembered because the fragment table was full.
    pub fragment_table_full: u64,
    /// ICMP errors quoting a TCP segment that refused no connection, even
    /// after waiting about a second of capture time for its SYN: the
    /// connection was not captured, or was answered already, or the error
    /// quoted another segment than its SYN.
    pub icmp_refusals_unmatched: u64,
    /// Handshake legs not recorded because timestamps ran backwards.
    pub handshakes_out_of_order: u64,
    pub connections_expired: u64,
    pub flows_expired: u64,
    /// Unanswered connections given up to make room.
    pub connections_evicted: u64,
    /// Connections given up to make room because they had been idle past
    /// the emergency timeouts.
    pub connections_emergency_expired: u64,
    /// Connections given up to make room although seen recently: those
    /// closest to expiring, when nothing else could go.
    pub connections_evicted_recent: u64,
    /// Packets of connections not tracked because the table was full of
    /// answered, open ones; they still count in their flows (but give no
    /// connection count or handshake time).
    pub untracked_pkts: u64,
    /// Unanswered flows given up to make room, and (with the idle flows
    /// below) the packets and bytes they had counted (no longer reported).
    pub flows_evicted: u64,
    /// Flows without connections given up to make room, closest to
    /// expiring first.
    pub idle_flows_evicted: u64,
    pub evicted_pkts: u64,
    pub evicted_bytes: u64,
    /// Packets (and bytes) counted in no flow: the flow table was full and
    /// nothing could be evicted.
    pub flow_table_full_pkts: u64,
    pub flow_table_full_bytes: u64,
    /// Handshake samples that replaced a digest's oldest because the
    /// histogram limit was reached.
    pub handshake_samples_replaced: u64,
    /// Connection records (`TableConfig::conn_records`) dropped because
    /// the queue to the next export was full.
    pub conn_records_dropped: u64,
    /// Last records of flows that left the table not kept for the next
    /// snapshot: as many were waiting already
    /// ([`super::TableConfig::ended_flows`]).
    pub ended_flow_records_dropped: u64,
    /// Gauges at the time of the export.
    pub active_connections: u64,
    pub active_flows: u64,
    pub active_sketches: u64,
    pub connection_capacity: u64,
    pub flow_capacity: u64,
    pub sketch_capacity: u64,
}

impl TableCounters {
    pub fn add(&mut self, o: &TableCounters) {
        let sat = |a: u64, b: u64| a.saturating_add(b);
        self.fragments_unmatched += o.fragments_unmatched;
        self.fragment_table_full += o.fragment_table_full;
        self.icmp_refusals_unmatched += o.icmp_refusals_unmatched;
        self.handshakes_out_of_order += o.handshakes_out_of_order;
        self.connections_expired += o.connections_expired;
        self.flows_expired += o.flows_expired;
        self.connections_evicted += o.connections_evicted;
        self.connections_emergency_expired += o.connections_emergency_expired;
        self.connections_evicted_recent += o.connections_evicted_recent;
        self.idle_flows_evicted += o.idle_flows_evicted;
        self.untracked_pkts += o.untracked_pkts;
        self.flows_evicted += o.flows_evicted;
        self.evicted_pkts += o.evicted_pkts;
        self.evicted_bytes += o.evicted_bytes;
        self.flow_table_full_pkts += o.flow_table_full_pkts;
        self.flow_table_full_bytes += o.flow_table_full_bytes;
        self.handshake_samples_replaced += o.handshake_samples_replaced;
        self.conn_records_dropped += o.conn_records_dropped;
        self.ended_flow_records_dropped += o.ended_flow_records_dropped;
        self.active_connections += o.active_connections;
        self.active_flows += o.active_flows;
        self.active_sketches += o.active_sketches;
        // Unbounded shards report u64::MAX: keep it saturated.
        self.connection_capacity = sat(self.connection_capacity, o.connection_capacity);
        self.flow_capacity = sat(self.flow_capacity, o.flow_capacity);
        self.sketch_capacity = sat(self.sketch_capacity, o.sketch_capacity);
    }
}
