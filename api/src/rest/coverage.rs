//! The `coverage` object every answer carries next to its flows: which
//! vantage points the answer covers (one flowtap, or every agent of a hub),
//! which are missing, how old each one's data is, and the capture losses
//! and evictions they report — so that "no traffic" and "not seen" read
//! differently.

use pipeline::snapshot::{Coverage, Losses};
use serde::Serialize;

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct CoverageJson {
    pub agents_expected: usize,
    pub agents_answered: usize,
    /// Names of the agents whose data is not in the answer.
    pub agents_missing: Vec<String>,
    /// Summed over the agents that answered.
    #[serde(flatten)]
    pub losses: LossesJson,
    pub agents: Vec<AgentJson>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossesJson {
    /// Frames the kernel dropped before flowtap read them.
    pub capture_drops: u64,
    /// Packets dropped between a flowtap's workers.
    pub handoff_drops: u64,
    /// Flows given up to make room.
    pub flows_evicted: u64,
    /// Packets that found no room in any flow.
    pub packets_in_no_flow: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct AgentJson {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub answered: bool,
    /// Seconds between its data and this answer's snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub losses: LossesJson,
}

impl From<Losses> for LossesJson {
    fn from(l: Losses) -> Self {
        LossesJson {
            capture_drops: l.capture_dropped,
            handoff_drops: l.handoff_dropped,
            flows_evicted: l.flows_evicted,
            packets_in_no_flow: l.packets_in_no_flow,
        }
    }
}

impl CoverageJson {
    /// The coverage of `c` as of `now_ns` (wall clock, when the view was built).
    pub fn of(c: &Coverage, now_ns: u64) -> CoverageJson {
        let mut total = Losses::default();
        let mut missing = Vec::new();
        let agents = c
            .agents
            .iter()
            .map(|a| {
                if a.answered() {
                    total.add(&a.losses);
                } else {
                    missing.push(a.name.to_string());
                }
                AgentJson {
                    name: a.name.to_string(),
                    node: a.node.as_deref().map(str::to_owned),
                    answered: a.answered(),
                    age_s: a
                        .updated_ns
                        .map(|t| (now_ns.saturating_sub(t) as f64 / 1e6).round() / 1e3),
                    error: a.error.clone(),
                    losses: a.losses.into(),
                }
            })
            .collect();
        CoverageJson {
            agents_expected: c.agents.len(),
            agents_answered: c.agents.iter().filter(|a| a.answered()).count(),
            agents_missing: missing,
            losses: total.into(),
            agents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::snapshot::AgentCoverage;

    #[test]
    fn missing_agents_are_named_and_losses_summed_over_the_rest() {
        let agent = |name: &str, updated: Option<u64>, drops: u64| AgentCoverage {
            name: name.into(),
            node: Some(format!("node-{name}").into()),
            updated_ns: updated,
            error: updated.is_none().then(|| "connection refused".into()),
            losses: Losses {
                capture_dropped: drops,
                ..Losses::default()
            },
            ..AgentCoverage::default()
        };
        let c = Coverage {
            agents: vec![
                agent("a", Some(1_000_000_000), 5),
                agent("b", None, 100),
                agent("c", Some(1_500_000_000), 2),
            ],
        };
        let j = CoverageJson::of(&c, 2_000_000_000);
        assert_eq!((j.agents_expected, j.agents_answered), (3, 2));
        assert_eq!(j.agents_missing, ["b"]);
        assert_eq!(j.losses.capture_drops, 7);
        assert_eq!(j.agents[0].age_s, Some(1.0));
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.contains(r#""capture_drops":7"#), "{text}");
        assert!(text.contains(r#""error":"connection refused""#), "{text}");
    }
}
