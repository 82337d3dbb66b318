//! The end-of-run report on stderr, made of the [`CATALOG`] metrics that
//! name a report line: one line per [`Line`] (`flowtap: flows: flows 120,
//! connections 146, ...`), and one per capture queue.

use std::collections::BTreeMap;

use super::Sources;
use super::catalog::{CATALOG, Line, Value};

/// The report's lines, each without the `flowtap: ` prefix.
pub fn lines(s: &Sources<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for line in Line::ALL {
        // Items by the line's label value: one group for most lines, one per
        // queue for the queue line.
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Whether any value on the line is other than 0.
        let mut any = false;
        for m in CATALOG {
            let Some((l, words)) = m.report else { continue };
            if l != line {
                continue;
            }
            match m.value {
                Value::One(read) => {
                    let v = read(s);
                    any |= v != 0.0;
                    groups
                        .entry(String::new())
                        .or_default()
                        .push(format!("{words} {}", v as u64));
                }
                Value::Labelled(_, read) => {
                    for (labels, v) in read(s) {
                        any |= v != 0.0;
                        let (group, item) = if line.per_label() {
                            (labels.join(" "), format!("{words} {}", v as u64))
                        } else {
                            (String::new(), format!("{} {}", labels.join(" "), v as u64))
                        };
                        groups.entry(group).or_default().push(item);
                    }
                }
                Value::Histogram(..) => {}
            }
        }
        if line.only_if_any() && !any {
            continue;
        }
        for (group, items) in groups {
            let title = match group.as_str() {
                "" => line.title().to_owned(),
                g => format!("{} {g}", line.title()),
            };
            out.push(format!("{title}: {}", items.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pipeline::Snapshot;
    use pipeline::source::QueueStats;

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::metrics::ServiceStats;

    #[test]
    fn lines_come_from_the_catalog() {
        let mut snapshot = Snapshot::default();
        snapshot.counters.ingest.kinds[0] = 7;
        snapshot.counters.table.flows_evicted = 3;
        let stats = ServiceStats::default();
        let queues = [QueueStats {
            interface: "eth1".into(),
            queue: 1,
            frames: 5,
            invalid: 2,
            ..QueueStats::default()
        }];
        let lines_of = |snapshot, stats, queues| {
            lines(&Sources {
                snapshot,
                stats,
                queues,
                ready: true,
                version: "v",
                commit: "c",
            })
        };
        let lines = lines_of(&snapshot, &stats, &queues);
        assert!(
            lines[0].starts_with("frames by kind: tcp 7, udp 0"),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("flows evicted 3")),
            "{lines:?}"
        );
        let queue = lines.last().unwrap();
        assert!(queue.starts_with("queue eth1 1: frames 5, "), "{queue}");
        assert!(queue.ends_with("invalid 2"), "{queue}");
        // No exporter, no IPFIX line; one that lost records has one.
        assert!(!lines.iter().any(|l| l.starts_with("ipfix")), "{lines:?}");
        stats.ipfix.records_lost.store(12, Ordering::Relaxed);
        let lines = lines_of(&snapshot, &stats, &queues);
        assert_eq!(
            lines.last().unwrap(),
            "ipfix: records 0, messages 0, send errors 0, tcp connects 0, records lost 12, \
             connection records dropped 0, ended flow records dropped 0"
        );
    }
}
