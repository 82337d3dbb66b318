//! The body of the fuzz target `hub_feed` (`fuzz/`), here so that the
//! inputs a fuzzer once found are replayed by an ordinary test
//! (`hub/tests/fuzz_regressions.rs`) through exactly the same code. An
//! agent's feed is network input to the hub: whatever its bytes, decoding
//! either fails or gives records that the hub merges, follows and answers
//! over. Panics on a failed check.

use std::sync::Arc;

use api::feed::Feed;
use api::pairs::PairCounters;
use api::rest;
use api::view::View;
use pipeline::Snapshot;
use pipeline::flow::Window;
use pipeline::snapshot::{AgentCoverage, Coverage};

use crate::merge::{self, AgentFlows, Chunked};
use crate::previous::{Previous, Sharer};

/// What the hub asks of every snapshot here: each answer must be JSON.
const QUERIES: [(&str, &str); 6] = [
    (rest::FLOWS_PATH, "format=full"),
    (rest::FLOWS_PATH, "aggregate=namespace"),
    (rest::FLOWS_PATH, "aggregate=pod&format=full"),
    (rest::FLOWS_PATH, "sort=bytes&limit=3"),
    (rest::SUMMARY_PATH, ""),
    (rest::workloads::PATH, ""),
];

/// Two rounds of a hub over `data` as an agent's feed: the first with one
/// agent, the second with the same feed from two agents on two nodes,
/// decoded against the first round's snapshot (its digests shared). A
/// flow both agents saw alike is one flow with the same counts.
pub fn hub_feed(data: &[u8]) {
    let decode = |previous: Option<&Previous>| -> Option<Chunked> {
        let (_, flows) = Feed::open(data).ok()?;
        Sharer::new(previous).records(flows).ok()
    };
    let Some(once) = decode(None) else {
        return;
    };
    let mut pairs = PairCounters::default();
    let first = Arc::new(round(vec![agent(0, "a", once)], &mut pairs));
    let previous = Previous::new(first.clone());
    let twice = [(0, "a"), (1, "b")].map(|(id, node)| {
        agent(
            id,
            node,
            decode(Some(&previous)).expect("it decoded before"),
        )
    });
    let second = round(twice.into(), &mut pairs);
    assert_eq!(second.flows.len(), first.flows.len(), "flows seen twice");
    for (now, then) in second.flows.iter().zip(&first.flows) {
        assert_eq!(now.key, then.key);
        assert_eq!(now.sent, then.sent, "{:?}", now.key);
        assert_eq!(now.seen_by.as_deref(), Some(&[0, 1][..]));
    }
}

fn agent(agent: u16, node: &str, flows: Chunked) -> AgentFlows {
    AgentFlows {
        agent,
        node: Some(node.into()),
        flows,
    }
}

/// Merges `agents`, answers every query over the result, and follows its
/// flows for the per-pair counters, as a hub's round does.
fn round(agents: Vec<AgentFlows>, pairs: &mut PairCounters) -> Snapshot {
    let coverage = Coverage {
        agents: agents
            .iter()
            .map(|a| AgentCoverage {
                name: format!("http://agent-{}", a.agent).into(),
                updated_ns: Some(1),
                ..AgentCoverage::default()
            })
            .collect(),
    };
    let snapshot = Arc::new(Snapshot {
        flows: merge::merge(agents, |_, _| None),
        rtt_window: Window::Unbounded,
        coverage,
        ..Snapshot::default()
    });
    let view = View::build(snapshot.clone(), None, Arc::default());
    for (path, query) in QUERIES {
        let answer = rest::respond(&view, path, query);
        assert_eq!(answer.status, 200, "{path}?{query}");
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&answer.body) {
            panic!("{path}?{query} is not JSON: {e}");
        }
    }
    pairs.observe(&view);
    drop(view);
    Arc::into_inner(snapshot).expect("the view is gone")
}
