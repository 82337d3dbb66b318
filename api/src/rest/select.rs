//! Which flows a query matches, and in what order.

use std::cmp::Ordering;

use super::query::{FlowQuery, SortKey};
use super::rows::{Grouped, Rank, Row, flow_rank};
use crate::view::View;
use pipeline::flow::Side;

/// True when `name` is `wanted`.
fn name_is(name: Option<&std::sync::Arc<str>>, wanted: &str) -> bool {
    name.is_some_and(|n| **n == *wanted)
}

/// True when `name` is `wanted` or starts with it (`pod=frontend` matches
/// `frontend-abc123`): a pod's name ends in what its controller made up.
/// Namespaces and services are named by people and matched whole
/// (`ns=shop` is not `shop-eu`, `svc=postgres` not `postgres-metrics`).
fn name_starts(name: Option<&std::sync::Arc<str>>, wanted: &str) -> bool {
    name.is_some_and(|n| n.starts_with(wanted))
}

/// Whether flow `i` passes every filter of `q` (each filter matches either
/// side; filters combine with AND). The thresholds are left to
/// [`passes_thresholds`], since aggregated groups apply them after merging.
pub fn matches(view: &View, i: usize, q: &FlowQuery) -> bool {
    let f = &view.flows()[i];
    if q.l4proto.is_some_and(|p| p != f.key.proto) {
        return false;
    }
    if let Some(net) = q.ip
        && !net.contains(f.key.client.to_ip())
        && !net.contains(f.key.server.to_ip())
    {
        return false;
    }
    let either = |field: fn(&View, usize, Side) -> Option<&std::sync::Arc<str>>,
                  matches: fn(Option<&std::sync::Arc<str>>, &str) -> bool,
                  wanted: &Option<String>| match wanted {
        None => true,
        Some(w) => {
            matches(field(view, i, Side::Client), w) || matches(field(view, i, Side::Server), w)
        }
    };
    either(View::ns, name_is, &q.ns)
        && either(View::pod, name_starts, &q.pod)
        && either(View::svc, name_is, &q.svc)
}

/// Whether `q` filters at all (without filters every flow matches).
pub fn filters(q: &FlowQuery) -> bool {
    q.l4proto.is_some() || q.ip.is_some() || q.ns.is_some() || q.pod.is_some() || q.svc.is_some()
}

/// An entry's value under `sort` as one number that orders entries as the
/// API does, larger first (as `f64::total_cmp` for rates; no handshake
/// below every handshake), so that ranking a hub's million aggregated
/// entries keeps 8 bytes of each, not its whole [`Rank`].
pub fn sort_value(sort: SortKey, r: &Rank) -> u64 {
    match sort {
        SortKey::Bytes => r.bytes,
        SortKey::Pkts => r.pkts,
        SortKey::Pps => {
            // `total_cmp`'s order on the bits, made unsigned.
            let bits = r.pps.to_bits() as i64;
            let ordered = bits ^ (((bits >> 63) as u64) >> 1) as i64;
            (ordered as u64) ^ (1 << 63)
        }
        SortKey::HandshakeP99 => r.handshake_p99.map_or(0, |us| us.saturating_add(1)),
        SortKey::Retransmits => r.retransmits,
        SortKey::Failed => r.failed,
        SortKey::Rsts => r.rsts,
    }
}

/// Where an aggregated entry ranks: its [`sort_value`] first, then its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placing {
    pub value: u64,
    pub bytes: u64,
}

impl Placing {
    pub fn of(sort: SortKey, r: &Rank) -> Placing {
        Placing {
            value: sort_value(sort, r),
            bytes: r.bytes,
        }
    }
}

/// Whether an entry of rank `r` passes the thresholds of `q`
/// (`min_handshake_p99_us`, `min_failed`): applied after aggregation.
pub fn passes_thresholds(r: &Rank, q: &FlowQuery) -> bool {
    q.min_handshake_p99_us
        .is_none_or(|m| r.handshake_p99 >= Some(m))
        && q.min_failed.is_none_or(|m| r.failed >= m)
}

/// Whether `q` has thresholds at all.
pub fn thresholds(q: &FlowQuery) -> bool {
    q.min_handshake_p99_us.is_some() || q.min_failed.is_some()
}

/// Orders flow indices by `sort`, keeping the snapshot order (bytes, then a
/// deterministic key) among equals, and keeps the first `limit`.
pub fn top_flows(view: &View, indices: &mut Vec<usize>, sort: SortKey, limit: usize) {
    if sort == SortKey::Bytes {
        // Snapshot order already is bytes descending.
        indices.truncate(limit);
        return;
    }
    let key = |i: usize| sort_value(sort, &flow_rank(&view.flows()[i]));
    let order = |a: &usize, b: &usize| key(*b).cmp(&key(*a)).then(a.cmp(b));
    top_k(indices, limit, order);
}

/// Keeps the `limit` first aggregated entries by `sort`, sorted, and turns
/// just those into rows. Ties go to the larger byte count, then to the
/// rendered fields' order (protocol and client IP first; whole rows are
/// built only for entries that tie on those too).
/// `keyed` holds each entry with its [`Placing`] under `sort`.
pub fn top_groups(view: &View, mut keyed: Vec<(Placing, &Grouped)>, limit: usize) -> Vec<Row> {
    let tie = |g: &Grouped| match g {
        Grouped::One(i) => Row::of_flow(view, *i),
        Grouped::Many(r) => (**r).clone(),
    };
    let order = |a: &(Placing, &Grouped), b: &(Placing, &Grouped)| {
        (b.0.value, b.0.bytes)
            .cmp(&(a.0.value, a.0.bytes))
            .then_with(|| a.1.order_prefix(view).cmp(&b.1.order_prefix(view)))
            .then_with(|| {
                let (a, b) = (tie(a.1), tie(b.1));
                (a.proto, &a.client, &a.server, a.server_port).cmp(&(
                    b.proto,
                    &b.client,
                    &b.server,
                    b.server_port,
                ))
            })
    };
    top_k(&mut keyed, limit, order);
    keyed.into_iter().map(|(_, g)| tie(g)).collect()
}

/// Keeps the `limit` smallest items by `order`, sorted, in O(n) plus the
/// sort of what is kept.
fn top_k<T>(items: &mut Vec<T>, limit: usize, order: impl Fn(&T, &T) -> Ordering) {
    if limit < items.len() {
        if limit == 0 {
            items.clear();
            return;
        }
        items.select_nth_unstable_by(limit - 1, &order);
        items.truncate(limit);
    }
    items.sort_unstable_by(order);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(pps: f64, handshake_p99: Option<u64>, n: u64) -> Rank {
        Rank {
            bytes: n,
            pkts: n * 3,
            pps,
            handshake_p99,
            retransmits: n % 7,
            failed: n % 5,
            rsts: n % 3,
        }
    }

    /// A sort value orders entries as comparing their ranks field by field
    /// does: larger first, rates by `total_cmp`, no handshake last.
    #[test]
    fn sort_values_order_as_the_ranks_do() {
        let pps = [
            0.0,
            -0.0,
            0.5,
            1.0,
            1e-300,
            3.25,
            1e12,
            f64::INFINITY,
            f64::MAX,
        ];
        let p99 = [None, Some(0), Some(1), Some(999), Some(u64::from(u32::MAX))];
        let ranks: Vec<Rank> = (0..60u64)
            .map(|n| {
                rank(
                    pps[n as usize % pps.len()],
                    p99[n as usize % p99.len()],
                    n * 37 % 11,
                )
            })
            .collect();
        let by_field = |sort: SortKey, a: &Rank, b: &Rank| match sort {
            SortKey::Bytes => b.bytes.cmp(&a.bytes),
            SortKey::Pkts => b.pkts.cmp(&a.pkts),
            SortKey::Pps => b.pps.total_cmp(&a.pps),
            SortKey::HandshakeP99 => b.handshake_p99.cmp(&a.handshake_p99),
            SortKey::Retransmits => b.retransmits.cmp(&a.retransmits),
            SortKey::Failed => b.failed.cmp(&a.failed),
            SortKey::Rsts => b.rsts.cmp(&a.rsts),
        };
        for sort in [
            SortKey::Bytes,
            SortKey::Pkts,
            SortKey::Pps,
            SortKey::HandshakeP99,
            SortKey::Retransmits,
            SortKey::Failed,
            SortKey::Rsts,
        ] {
            for a in &ranks {
                for b in &ranks {
                    assert_eq!(
                        sort_value(sort, b).cmp(&sort_value(sort, a)),
                        by_field(sort, a, b),
                        "{sort:?}: {a:?} against {b:?}"
                    );
                }
            }
        }
    }
}
