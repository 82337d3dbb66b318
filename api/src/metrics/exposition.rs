//! `GET /metrics`: every metric of the [`CATALOG`] in the Prometheus text
//! format or OpenMetrics, encoded by prometheus-client.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Sources;
use super::catalog::{CATALOG, Kind, Metric, Value};
use super::stats::FixedHistogram;

type Labels = Vec<(String, String)>;

/// One metric's values, read at scrape time.
struct Family {
    metric: &'static Metric,
    samples: Vec<(Labels, f64)>,
    histograms: Vec<(Labels, FixedHistogram)>,
}

impl Family {
    fn read(metric: &'static Metric, s: &Sources<'_>) -> Family {
        let mut family = Family {
            metric,
            samples: Vec::new(),
            histograms: Vec::new(),
        };
        let labelled = |names: &[&str], values: Vec<String>| -> Labels {
            names.iter().map(|n| (*n).to_owned()).zip(values).collect()
        };
        match metric.value {
            Value::One(read) => family.samples.push((Vec::new(), read(s))),
            Value::Labelled(names, read) => {
                family.samples = read(s)
                    .into_iter()
                    .map(|(values, v)| (labelled(names, values), v))
                    .collect();
            }
            Value::Histogram(names, read) => {
                family.histograms = read(s)
                    .into_iter()
                    .map(|(values, h)| (labelled(names, values), h))
                    .collect();
            }
        }
        family
    }
}

/// The families, read: prometheus-client asks a registered collector to
/// encode itself, and ours has already read every value.
struct Encoded(Vec<Family>);

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} families)", self.0.len())
    }
}

impl Collector for Encoded {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let m = family.metric;
            let kind = match m.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut encoder = encoder.encode_descriptor(m.name, m.help, None, kind)?;
            if m.kind == Kind::Histogram {
                for (labels, h) in &family.histograms {
                    encoder
                        .encode_family(labels)?
                        .encode_histogram::<Labels>(h.sum, h.count, &h.buckets, None)?;
                }
                continue;
            }
            for (labels, value) in &family.samples {
                let sample = encoder.encode_family(labels)?;
                match m.kind {
                    Kind::Counter => ConstCounter::new(*value as u64).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Renders every metric in the chosen text format.
pub fn render(s: &Sources<'_>, format: Exposition) -> String {
    let families = CATALOG.iter().map(|m| Family::read(m, s)).collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Encoded(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    // prometheus-client writes an infinite gauge as Rust prints it (`inf`);
    // both formats spell it `+Inf`. A raw newline ends only a sample's line
    // (label values escape theirs).
    if out.contains(" inf\n") {
        out = out.replace(" inf\n", " +Inf\n");
    }
    match format {
        Exposition::OpenMetrics => out,
        Exposition::Prometheus => openmetrics_to_prometheus(&out),
    }
}

/// The two text formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// `application/openmetrics-text; version=1.0.0` (what Prometheus asks for).
    OpenMetrics,
    /// `text/plain; version=0.0.4`, the classic format (curl, promtool).
    Prometheus,
}

impl Exposition {
    /// Chooses by the request's Accept header (RFC 9110 12.5.1): each
    /// format's weight (`q`) is that of the most specific range naming it
    /// (its own type, then `type/*`, then `*/*`; 0 if none: `q=0` rules it
    /// out). OpenMetrics where its weight is above 0 and the classic
    /// format's is lower, or as high with OpenMetrics named itself (a
    /// wildcard alone, as curl sends, gets the classic format).
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        use crate::server::media::preference;
        let accept = accept.unwrap_or_default();
        let (om_named, om_q) = preference(accept, "application/openmetrics-text");
        let (_, classic_q) = preference(accept, "text/plain");
        if om_q > 0.0 && (om_q > classic_q || (om_q == classic_q && om_named == 3)) {
            Exposition::OpenMetrics
        } else {
            Exposition::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The classic text of `/metrics` over `snapshot` and `stats` alone (no
/// capture queues), for tests.
#[cfg(test)]
pub(crate) fn render_for_test(
    snapshot: &pipeline::Snapshot,
    stats: &crate::metrics::ServiceStats,
) -> String {
    let sources = Sources {
        snapshot,
        stats,
        queues: &[],
        ready: true,
        version: "",
        commit: "",
    };
    render(&sources, Exposition::Prometheus)
}

/// prometheus-client writes OpenMetrics; the classic format names a
/// counter's family like its samples (`_total`), has no `# EOF`, and writes
/// no empty label set.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            // The empty label set right after the name only: a label
            // value may hold `{} ` (a Kubernetes name from an inventory).
            None => match line.split_once("{} ") {
                Some((name, value)) if !name.contains(['{', '"', ' ']) => {
                    out.push_str(name);
                    out.push(' ');
                    out.push_str(value);
                }
                _ => out.push_str(line),
            },
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus, curl and clients that weigh formats send.
    #[test]
    fn the_format_is_chosen_by_weight() {
        use Exposition::{OpenMetrics, Prometheus};
        for (accept, format) in [
            (None, Prometheus),
            (Some("*/*"), Prometheus),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0, text/plain"),
                Prometheus,
            ),
            (
                Some("application/openmetrics-text;q=0.5, text/plain"),
                Prometheus,
            ),
            (
                Some("text/plain;q=0.2, Application/OpenMetrics-Text"),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=x"), Prometheus),
            // Wildcards, the most specific range deciding.
            (Some("text/plain;q=0, */*"), OpenMetrics),
            (Some("application/*"), OpenMetrics),
            (Some("application/*, text/*"), Prometheus),
            (Some("application/openmetrics-text;q=0, */*"), Prometheus),
            (Some("*/*, application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text, text/plain"),
                OpenMetrics,
            ),
        ] {
            assert_eq!(Exposition::negotiate(accept), format, "{accept:?}");
        }
    }

    /// The classic format drops the empty label set after a name, and
    /// only that: a label value holding `{} ` stays as it is.
    #[test]
    fn only_the_empty_label_set_is_dropped() {
        let open = "# TYPE a counter\na_total{} 1\nb{} 2.0\nc_total{w=\"fe{} x\"} 3\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(open),
            "# TYPE a_total counter\na_total 1\nb 2.0\nc_total{w=\"fe{} x\"} 3\n"
        );
    }

    /// Before the first snapshot there is no age to give: the series is
    /// absent (so `absent()` can alert on a flowtap that never published),
    /// not 0 (which read as fresh).
    #[test]
    fn no_snapshot_age_before_the_first_snapshot() {
        let stats = crate::metrics::ServiceStats::default();
        let render_at = |sequence| {
            let snapshot = pipeline::Snapshot {
                sequence,
                as_of_ns: pipeline::time::wall_now_ns(),
                ..pipeline::Snapshot::default()
            };
            render_for_test(&snapshot, &stats)
        };
        let sample = |text: &str| {
            text.lines()
                .any(|l| l.starts_with("flowtap_snapshot_age_seconds "))
        };
        assert!(!sample(&render_at(0)));
        assert!(sample(&render_at(1)));
    }

    /// A file's snapshot is as of its last packet (a capture months old),
    /// but it was published just now: the age is the publishing's.
    #[test]
    fn a_file_s_snapshot_is_as_old_as_its_publishing() {
        let stats = crate::metrics::ServiceStats::default();
        let now = pipeline::time::wall_now_ns();
        let snapshot = pipeline::Snapshot {
            sequence: 1,
            as_of_ns: now - 300 * 86_400 * pipeline::time::SECOND,
            coverage: crate::feed::own_coverage("vm", None, Default::default(), now),
            ..pipeline::Snapshot::default()
        };
        let text = render_for_test(&snapshot, &stats);
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("flowtap_snapshot_age_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..60.0).contains(&age), "{age}");
    }

    /// A hub whose every agent is down serves nothing: its data is
    /// infinitely old (its round's own time read as fresh), and the losses
    /// it can report are those of the agents that answered.
    #[test]
    fn a_hub_without_answers_is_infinitely_old() {
        use pipeline::snapshot::{AgentCoverage, Coverage, Losses};
        let stats = crate::metrics::ServiceStats::default();
        let now = pipeline::time::wall_now_ns();
        let agent = |name: &str, answered: bool| AgentCoverage {
            name: name.into(),
            node: Some("n1".into()),
            updated_ns: answered.then_some(now),
            error: (!answered).then(|| "refused".to_owned()),
            losses: Losses {
                capture_dropped: 7,
                flows_evicted: 3,
                ..Losses::default()
            },
            ..AgentCoverage::default()
        };
        let render = |agents: Vec<AgentCoverage>| {
            let snapshot = pipeline::Snapshot {
                sequence: 9,
                as_of_ns: now,
                coverage: Coverage { agents },
                ..pipeline::Snapshot::default()
            };
            render_for_test(&snapshot, &stats)
        };
        let down = render(vec![agent("http://a", false), agent("http://b", false)]);
        assert!(
            down.contains("\nflowtap_snapshot_age_seconds +Inf\n"),
            "{down}"
        );
        assert!(!down.contains("flowtap_agent_losses_total{"), "{down}");
        let one = render(vec![agent("http://a", true), agent("http://b", false)]);
        assert!(!one.contains("flowtap_snapshot_age_seconds +Inf"), "{one}");
        for (loss, n) in [
            ("capture_drops", 7),
            ("flows_evicted", 3),
            ("handoff_drops", 0),
        ] {
            let line = format!(
                "flowtap_agent_losses_total{{agent=\"http://a\",node=\"n1\",loss=\"{loss}\"}} {n}\n"
            );
            assert!(one.contains(&line), "{line}: {one}");
        }
        assert!(
            !one.contains("agent=\"http://b\",node=\"n1\",loss"),
            "{one}"
        );
    }

    /// OpenMetrics escapes `"` in help text; flowtap's help holds none, so
    /// both formats read it as written.
    #[test]
    fn help_text_needs_no_escaping() {
        for m in CATALOG {
            assert!(
                !m.help.contains(['"', '\\', '\n']),
                "{}: {}",
                m.name,
                m.help
            );
        }
    }
}
