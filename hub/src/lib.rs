//! `flowtap hub`: one answer for the whole cluster. The hub pulls every
//! agent's feed ([`api::feed`]) each interval, concurrently and each within
//! its timeout, merges them so that a flow seen by several agents counts
//! once ([`merge`]), and publishes the result as a snapshot to the same
//! publisher, views and server an agent uses: the same endpoints, MCP tools,
//! metrics and Kubernetes names, over everything.
//!
//! Agents come from `--agent URL`, from DNS names that resolve to many
//! addresses (a headless Service), and from the EndpointSlices of the
//! agents' Service as the Kubernetes watch sees them ([`agents`]). Every
//! answer carries the coverage: which agents answered, how old their data
//! is, which are missing and why, and what they lost. An agent that fails a
//! pull is missing from that snapshot: its flows leave the answer, and its
//! name and error are in the coverage, until it answers again.
//!
//! Pulls are on demand: when nothing has asked for data (flows, summary,
//! workloads, MCP, `/metrics`) for `idle_after`, the hub pauses, and the
//! next request wakes it and waits for the round it starts
//! ([`api::demand`]).

#![forbid(unsafe_code)]

pub mod agents;
pub mod client;
pub mod fuzzing;
pub mod instances;
pub mod merge;
pub mod previous;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::Publisher;
use api::demand::Demand;
use api::feed::{self, Feed, PullFailure};
use futures::FutureExt;
use pipeline::Snapshot;
use pipeline::flow::Window;
use pipeline::snapshot::{AgentCoverage, Coverage};
use pipeline::time::wall_now_ns;

pub use agents::{AgentSource, Discovery};
pub use client::AgentUrl;

#[derive(Clone, Debug)]
pub struct HubConfig {
    pub discovery: Discovery,
    /// The bearer token agents require, if any.
    pub token: Option<String>,
    pub interval: Duration,
    /// How long one agent's pull may take.
    pub agent_timeout: Duration,
    /// Agents pulled at most; more are not pulled, and named missing in
    /// the coverage.
    pub max_agents: usize,
    /// Bytes one agent's feed may take.
    pub max_feed_bytes: usize,
    /// Bytes of feeds held at once, fetched and not yet decoded
    /// ([`client::FeedRoom`]); at least `max_feed_bytes`.
    pub max_feed_bytes_held: usize,
    /// Flows a round merges at most, over all agents ([`FlowBudget`]).
    pub max_flows: usize,
    /// Pulls pause when nothing asked for data for this long (`None`:
    /// never).
    pub idle_after: Option<Duration>,
}

/// A running hub; dropping it stops the pulls.
pub struct Hub {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Starts pulling on a thread and runtime of its own, publishing each
    /// merged snapshot to `publisher`, as `demand` asks.
    pub fn start(
        config: HubConfig,
        publisher: Arc<Mutex<Publisher>>,
        demand: Arc<Demand>,
    ) -> std::io::Result<Hub> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flowtap-hub")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("flowtap-hub".into())
            .spawn(move || runtime.block_on(run(config, publisher, demand, stopping)))?;
        Ok(Hub {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Requests that find the hub paused wait at most this long beyond one
/// agent's timeout for the round they start (merging a large cluster takes
/// seconds).
pub const WAKE_WAIT_BEYOND_TIMEOUT: Duration = Duration::from_secs(10);

async fn run(
    config: HubConfig,
    publisher: Arc<Mutex<Publisher>>,
    demand: Arc<Demand>,
    stop: Arc<AtomicBool>,
) {
    let mut sequence = 0u64;
    // Agents by name and whether they answered last time: changes are logged.
    let mut last: std::collections::HashMap<Arc<str>, bool> = std::collections::HashMap::new();
    // Each agent's node as it last reported it, for the rounds it fails.
    let mut nodes: std::collections::HashMap<Arc<str>, Arc<str>> = std::collections::HashMap::new();
    let mut next = Instant::now();
    // The last snapshot published, which the next round shares unchanged
    // handshake digests with.
    let mut last_published: Option<Arc<Snapshot>> = None;
    let mut sharing = previous::Sharing::default();
    let mut instances = instances::Instances::default();
    let mut merged_last = MergedLastRound::default();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            tokio::time::sleep((next - now).min(Duration::from_millis(50))).await;
            continue;
        }
        if let Some(idle) = config.idle_after
            && sequence > 0
            && demand.unasked_for() >= idle
        {
            if !demand.is_paused() {
                tracing::info!(
                    idle_s = idle.as_secs_f64(),
                    "nothing asked for data: pulls paused until a request comes"
                );
            }
            // Woken at once by a request; the stop flag checked meanwhile.
            if demand.pause(idle, Duration::from_millis(200)).await {
                continue;
            }
            tracing::info!("asked for data: pulling again");
        }
        next = Instant::now() + config.interval;
        sequence += 1;
        let to_index = sharing.to_index(last_published.take());
        let indexed = to_index.is_some();
        let (mut snapshot, shared) = round(
            &config,
            &publisher,
            sequence,
            to_index,
            &mut instances,
            &mut merged_last,
        )
        .await;
        remember_nodes(&mut nodes, &mut snapshot.coverage);
        if indexed && let Some(paid) = shared {
            sharing.paid(paid);
        }
        log_changes(&mut last, &snapshot.coverage);
        let published = Instant::now();
        last_published = Some(publisher.lock().expect("publisher lock").publish(snapshot));
        demand.published();
        tracing::debug!(
            took_ms = published.elapsed().as_millis() as u64,
            "published"
        );
    }
}

/// An agent that fails a pull is named with the node it last reported (in
/// the coverage, and so in `flowtap_agent_up{agent,node}`, whose series
/// for that node then reads 0 rather than going stale beside a new one
/// without a node). Agents no longer known are forgotten.
fn remember_nodes(
    nodes: &mut std::collections::HashMap<Arc<str>, Arc<str>>,
    coverage: &mut Coverage,
) {
    nodes.retain(|name, _| coverage.agents.iter().any(|a| &a.name == name));
    for a in &mut coverage.agents {
        match &a.node {
            Some(node) => {
                nodes.insert(a.name.clone(), node.clone());
            }
            None => a.node = nodes.get(&a.name).cloned(),
        }
    }
}

/// Logs agents that appeared, answered again, failed, or went away.
fn log_changes(last: &mut std::collections::HashMap<Arc<str>, bool>, coverage: &Coverage) {
    let mut now = std::collections::HashMap::new();
    for a in &coverage.agents {
        let answered = a.answered();
        match (last.get(&a.name), answered) {
            (Some(true), true) | (Some(false), false) => {}
            (_, true) => {
                tracing::info!(agent = %a.name, node = a.node.as_deref().unwrap_or(""), "agent answering")
            }
            (_, false) => tracing::warn!(
                agent = %a.name,
                error = a.error.as_deref().unwrap_or(""),
                "agent missing (not answering, or its feed refused: the error says which): its flows are left out until it is merged again"
            ),
        }
        now.insert(a.name.clone(), answered);
    }
    for name in last.keys().filter(|n| !now.contains_key(*n)) {
        tracing::info!(agent = %name, "agent no longer discovered");
    }
    *last = now;
}

/// `agent`'s feed, within its timeout, its bound and the room for feeds
/// held at once: a round's pulls, and its probe of an address beyond
/// `--max-agents`.
async fn pull_feed(
    config: &HubConfig,
    agent: &AgentUrl,
    room: &client::FeedRoom,
) -> Result<client::Pulled, client::Failed> {
    client::get_held(
        agent,
        feed::PATH,
        config.token.as_deref(),
        config.agent_timeout,
        config.max_feed_bytes,
        room,
    )
    .await
}

/// One pull of every agent, merged into a snapshot; handshake digests that
/// have not changed since `last` are shared with it ([`previous`]), and
/// whether that paid for any feed (`None`: no feed was decoded, so nothing
/// was learnt).
pub async fn round(
    config: &HubConfig,
    publisher: &Mutex<Publisher>,
    sequence: u64,
    last: Option<Arc<Snapshot>>,
    instances: &mut instances::Instances,
    merged_last: &mut MergedLastRound,
) -> (Snapshot, Option<bool>) {
    let (inventory, stats) = {
        let publisher = publisher.lock().expect("publisher lock");
        let inventory = publisher.inventory().map(|s| s.current());
        (inventory, publisher.stats())
    };
    let round_started = Instant::now();
    let found = config
        .discovery
        .agents(inventory.as_deref(), config.agent_timeout)
        .await;
    let mut agents = instances.pull_once(found.agents.clone());
    // Agents beyond the bound are not pulled, and the coverage names them
    // missing (and `log_changes` logs each once): an answer must not pass
    // off what they saw as no traffic.
    let left_out = agents.split_off(config.max_agents.min(agents.len()));
    // Indexed off the reactor while the first pulls are under way; each
    // decoding waits for it.
    let previous = async move {
        let last = last?;
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let previous = previous::Previous::new(last);
            tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "indexed the last snapshot"
            );
            Arc::new(previous)
        })
        .await
        .ok()
    }
    .boxed()
    .shared();
    // Feeds decoded at once: one per core. Each holds its decoded flows
    // beside the records made of them until done, and decoding more at a
    // time than there are cores only holds more of those at once (all 32
    // at a time, once they waited for the index: +110 MB of peak RSS).
    let decoders = tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    );
    let budget = FlowBudget::new(config.max_flows, std::mem::take(merged_last));
    let claims = instances::Claims::default();
    let room = client::FeedRoom::new(
        config.max_feed_bytes_held,
        stats.hub_feed_room_waits.clone(),
    );
    let pulls = agents.iter().map(|agent| {
        let (previous, decoders, budget, claims, room) =
            (previous.clone(), &decoders, &budget, &claims, &room);
        async move {
            let started = Instant::now();
            let pulled = pull_feed(config, agent, room).await;
            // The agent's data dated by its own age of it, so that one
            // whose pipeline stopped while its server answers looks old.
            let taken_ns = pulled
                .as_ref()
                .ok()
                .and_then(|p| p.taken_ns)
                .unwrap_or_else(wall_now_ns);
            // Decoding a large feed is CPU work: off the runtime's threads,
            // agents in parallel, as many as there are cores.
            // A feed takes its share of the bound before it is decoded,
            // and one refused is let go at once.
            // One agent reached at another address too is taken once.
            // A feed refused here lets its room go at once; one taken holds
            // it until decoded.
            let taken = pulled.map_err(PullError::from).and_then(|pulled| {
                let (head, flows) = Feed::open(&pulled.body).map_err(PullError::unreadable)?;
                claims
                    .claim(head.instance, &agent.name())
                    .map_err(|first| PullError::SameAgentAs {
                        first,
                        instance: head.instance,
                    })?;
                let declared = flows.declared();
                budget
                    .take(&agent.name(), declared)
                    .map_err(|error| PullError::Failed {
                        failure: PullFailure::FlowBound,
                        error,
                        node: head.node.clone(),
                    })?;
                Ok((pulled, declared))
            });
            let decoded = match taken {
                Ok((pulled, declared)) => {
                    let previous = previous.await;
                    let _decoder = decoders.acquire().await.expect("never closed");
                    let decoded = tokio::task::spawn_blocking(move || {
                        let (head, flows) = Feed::open(&pulled.body)?;
                        let mut sharer = previous::Sharer::new(previous.as_deref());
                        let records = sharer.records(flows)?;
                        Ok((head, records, sharer.paid()))
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                    // A feed that does not decode merges nothing: its
                    // share goes back to the others.
                    if decoded.is_err() {
                        budget.give_back(declared);
                    }
                    decoded.map_err(PullError::unreadable)
                }
                Err(e) => Err(e),
            };
            (agent, decoded, taken_ns, started.elapsed())
        }
    });
    // An address beyond the bound may be a second address of an agent
    // pulled at another (a dual-stack name's A and AAAA records): the hub
    // learns that only by pulling it. One such address a round is asked
    // for its agent's instance, and its feed let go unmerged, so that the
    // bound counts agents, not addresses, once each is known. Asked: one
    // never learnt, or learnt as an agent none of the pulled addresses is
    // now (the agent restarted, with a new instance); in turn, round by
    // round, so that one that never answers holds up none of the others.
    let instances_pulled: std::collections::HashSet<u64> = agents
        .iter()
        .filter_map(|a| instances.known(&a.name()))
        .collect();
    let unknown: Vec<&AgentUrl> = left_out
        .iter()
        .filter(|a| {
            instances
                .known(&a.name())
                .is_none_or(|i| !instances_pulled.contains(&i))
        })
        .collect();
    let probe = (!unknown.is_empty()).then(|| unknown[sequence as usize % unknown.len()].clone());
    let probed = async {
        let agent = probe?;
        let pulled = pull_feed(config, &agent, &room).await.ok()?;
        let (head, _) = Feed::open(&pulled.body).ok()?;
        Some((agent.name(), head.instance))
    };
    let (results, probed) = futures::future::join(futures::future::join_all(pulls), probed).await;
    // The last snapshot goes with its view, when the next is published.
    drop(previous);
    let pulled = round_started.elapsed();
    let mut coverage = Coverage::default();
    let mut flows = Vec::with_capacity(results.len());
    let mut since_ns: Option<u64> = None;
    let mut shared: Option<bool> = None;
    let mut pulled_instances = Vec::with_capacity(results.len());
    // One agent reached at several addresses is named missing once, and not
    // at all when it was merged from another (each failed address had its
    // entry: two missing for one agent down). Merged, not claimed: the
    // address that claimed it may itself have failed (the flow bound, a
    // feed that does not decode), and its entry is then the one naming it.
    let answered: std::collections::HashSet<u64> = results
        .iter()
        .filter_map(|(_, decoded, ..)| decoded.as_ref().ok().map(|(feed, ..)| feed.instance))
        .collect();
    let mut named_missing = std::collections::HashSet::new();
    for (agent, decoded, taken_ns, took) in results {
        let name = agent.name();
        let instance = match &decoded {
            Ok((feed, ..)) => Some(feed.instance),
            Err(PullError::SameAgentAs { instance, .. }) => Some(*instance),
            Err(PullError::Failed { .. }) => None,
        };
        pulled_instances.push((name.clone(), instance));
        match decoded {
            Ok((feed, records, paid)) => {
                merged_last.insert(name.clone(), records.len());
                shared = Some(shared.unwrap_or(false) || paid);
                tracing::debug!(agent = %name, flows = records.len(), took_ms = took.as_millis() as u64, "pulled");
                coverage
                    .agents
                    .push(feed::agent_coverage(&name, &feed, taken_ns));
                since_ns = match (since_ns, feed.since_ns) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                flows.push(merge::AgentFlows {
                    // Its place in the coverage, which names it in
                    // `seen_by` (not its place among the pulls: a second
                    // address of one agent has no entry there).
                    agent: coverage.agents.len() as u16 - 1,
                    node: feed.node.as_deref().map(Into::into),
                    flows: records,
                });
            }
            Err(PullError::SameAgentAs { first, .. }) => {
                tracing::debug!(agent = %name, same_as = %first, "one agent at two addresses: merged once");
            }
            Err(PullError::Failed {
                failure,
                error,
                node,
            }) => {
                tracing::debug!(agent = %name, %error, reason = failure.label(), "pull failed");
                stats.hub_pulls_failed[failure.index()].fetch_add(1, Ordering::Relaxed);
                if let Some(instance) = instances.known(&name)
                    && (answered.contains(&instance) || !named_missing.insert(instance))
                {
                    continue;
                }
                coverage.agents.push(AgentCoverage {
                    node: node
                        .map(Into::into)
                        .or_else(|| found.nodes.get(&name).cloned()),
                    name: name.into(),
                    error: Some(error),
                    ..AgentCoverage::default()
                });
            }
        }
    }
    if let Some((name, instance)) = &probed {
        pulled_instances.push((name.clone(), Some(*instance)));
    }
    instances.learn(&pulled_instances, &found.agents);
    let unpulled = found
        .unpulled
        .into_iter()
        .map(|u| (u.name, u.reason, u.node));
    let beyond = format!(
        "not pulled: more agents than --max-agents {}",
        config.max_agents
    );
    // Not one whose agent was merged from another address, nor one whose
    // agent is named missing already (at the address that failed).
    let merged_elsewhere = |agent: &AgentUrl| {
        instances.known(&agent.name()).is_some_and(|instance| {
            answered.contains(&instance) || named_missing.contains(&instance)
        })
    };
    let beyond_the_bound = left_out
        .iter()
        .filter(|a| !merged_elsewhere(a))
        .map(|agent| {
            let name = agent.name();
            let node = found.nodes.get(&name).cloned();
            (name, beyond.clone(), node)
        });
    for (name, reason, node) in beyond_the_bound.chain(unpulled) {
        coverage.agents.push(AgentCoverage {
            name: name.into(),
            node,
            error: Some(reason),
            ..AgentCoverage::default()
        });
    }
    let node_of = |ip, at_ns| {
        inventory
            .as_deref()
            .and_then(|inv| inv.lookup_at(ip, at_ns))
            .and_then(|id| id.node.clone())
    };
    let merge_started = Instant::now();
    let merged = merge::merge(flows, node_of);
    tracing::debug!(
        pulled_ms = pulled.as_millis() as u64,
        merged_ms = merge_started.elapsed().as_millis() as u64,
        flows = merged.len(),
        "round"
    );
    let mut counters = pipeline::snapshot::Counters::default();
    counters.table.flow_capacity = config.max_flows as u64;
    counters.table.active_flows = merged.len() as u64;
    let snapshot = Snapshot {
        sequence,
        as_of_ns: wall_now_ns(),
        since_ns,
        // Every digest holds what its agent's window held.
        rtt_window: Window::Unbounded,
        flows: merged,
        counters,
        coverage,
        // The whole round: pulls, decoding and the merge.
        merge_ns: round_started.elapsed().as_nanos() as u64,
        ..Snapshot::default()
    };
    (snapshot, shared)
}

/// Why a pull gave no feed to merge.
enum PullError {
    /// Another address of an agent whose feed this round took (at
    /// `first`): merged once, and not named missing.
    SameAgentAs { first: String, instance: u64 },
    /// The agent is missing this round, for this reason; with the node its
    /// feed named, if it answered (a feed refused at the flow bound).
    Failed {
        failure: PullFailure,
        error: String,
        node: Option<String>,
    },
}

impl From<client::Failed> for PullError {
    fn from(failed: client::Failed) -> PullError {
        PullError::Failed {
            failure: failed.failure,
            error: failed.error,
            node: None,
        }
    }
}

impl PullError {
    /// An answer that is no feed this hub reads.
    fn unreadable(error: String) -> PullError {
        PullError::Failed {
            failure: PullFailure::Unreadable,
            error,
            node: None,
        }
    }
}

/// The flows each agent (by address) merged in the last round, which
/// keep their place at the flow bound ([`FlowBudget`]).
pub type MergedLastRound = std::collections::HashMap<String, usize>;

/// The flows one round merges at most (`--max-flows`), so that a hub's
/// memory is bounded whatever the cluster's size: each feed takes the count
/// it declares before it is decoded, and a feed that would go past the
/// bound is not merged. Its agent is then named missing with the reason,
/// as any agent that did not answer is: an answer never passes off what it
/// saw as no traffic. The agents merged last round keep their place: as
/// many flows as each merged then are kept for it until its feed comes
/// (or the round ends), and the others take what is left as they arrive.
/// Feeds arrive in a different order every round, and by arrival alone
/// the agents left out changed from one second to the next, a node's
/// flows coming and going in answers.
struct FlowBudget {
    max: usize,
    shares: Mutex<Shares>,
}

struct Shares {
    left: usize,
    /// Of `left`, what is kept for the agents merged last round whose
    /// feeds have not come yet.
    kept: usize,
    kept_for: MergedLastRound,
}

impl FlowBudget {
    fn new(max: usize, merged_last: MergedLastRound) -> FlowBudget {
        let kept = merged_last.values().sum::<usize>().min(max);
        FlowBudget {
            max,
            shares: Mutex::new(Shares {
                left: max,
                kept,
                kept_for: merged_last,
            }),
        }
    }

    /// Returns what a feed took but did not merge.
    fn give_back(&self, flows: usize) {
        self.shares.lock().expect("budget lock").left += flows;
    }

    /// Takes `flows` for `agent`'s feed from what is left and not kept for
    /// others, or says why not.
    fn take(&self, agent: &str, flows: usize) -> Result<(), String> {
        let mut shares = self.shares.lock().expect("budget lock");
        // Its own place is given up whether its feed fits or not.
        if let Some(own) = shares.kept_for.remove(agent) {
            shares.kept = shares.kept.saturating_sub(own);
        }
        let free = shares.left - shares.kept;
        if flows > free {
            let kept = match shares.kept {
                0 => String::new(),
                kept => format!(", {kept} more kept for agents merged last round"),
            };
            return Err(format!(
                "not merged: its {flows} flows would take the hub past --max-flows {} ({free} left this round{kept})",
                self.max
            ));
        }
        shares.left -= flows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_take_flows_until_the_bound_and_no_further() {
        let budget = FlowBudget::new(100, MergedLastRound::default());
        assert_eq!(budget.take("a", 60), Ok(()));
        let refused = budget.take("b", 41).unwrap_err();
        assert_eq!(
            refused,
            "not merged: its 41 flows would take the hub past --max-flows 100 (40 left this round)"
        );
        // A refused feed takes nothing: a smaller one still fits, exactly.
        assert_eq!(budget.take("c", 40), Ok(()));
        assert!(budget.take("d", 1).is_err());
        assert_eq!(budget.take("e", 0), Ok(()));
        // A feed that took its share and then failed to decode gives it
        // back to the others.
        budget.give_back(40);
        assert_eq!(budget.take("f", 40), Ok(()));
    }

    /// The agents merged last round keep their place at the bound, in
    /// whatever order the feeds come: a newcomer takes only what they
    /// leave. One that grew past its place does not take another's.
    #[test]
    fn agents_merged_last_round_keep_their_place_at_the_bound() {
        let last = MergedLastRound::from([("a".to_owned(), 28), ("b".to_owned(), 1)]);
        let budget = FlowBudget::new(40, last.clone());
        // The one left out last round comes first: 11 are not kept.
        assert_eq!(
            budget.take("c", 29).unwrap_err(),
            "not merged: its 29 flows would take the hub past --max-flows 40 (11 left this round, 29 more kept for agents merged last round)"
        );
        assert_eq!(budget.take("b", 1), Ok(()));
        assert_eq!(budget.take("a", 28), Ok(()));
        // Grown: its place and what no one keeps, not b's.
        let budget = FlowBudget::new(40, last);
        assert_eq!(
            budget.take("a", 40).unwrap_err(),
            "not merged: its 40 flows would take the hub past --max-flows 40 (39 left this round, 1 more kept for agents merged last round)"
        );
        assert_eq!(budget.take("a", 39), Ok(()));
        assert_eq!(budget.take("b", 1), Ok(()));
    }
}
