//! Which agents the hub pulls, found anew every interval: URLs given with
//! `--agent`, every address a DNS name resolves to (`--agents-dns`, e.g. a
//! headless Service), and the endpoints of the agents' Service as the
//! Kubernetes names see them (`--agents-service`), so agents that come and
//! go are followed without a restart. What is there but not pulled (an
//! endpoint that is not ready, a source that names no agent) is returned
//! too, for the coverage to name missing: an agent that vanished from
//! discovery must not read as a node without traffic.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s::{EndpointState, Inventory};
use tokio::task::JoinHandle;

use crate::client::{self, AgentUrl};

/// Why a Service's agents are not known yet (the watch has not listed
/// every kind, or cannot reach the API), and why before the names load: a
/// hub's first rounds can say so, and a one-shot `--dump` waits them out.
pub const NOT_LISTED: &str = "the Kubernetes API has not been listed yet, or its watch keeps \
     failing: the Service's endpoints are not known";
pub const NOT_LOADED: &str = "the Kubernetes names are not loaded yet";

/// One way of finding agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSource {
    Url(AgentUrl),
    /// `name:port`, resolved to every address.
    Dns {
        name: String,
        port: u16,
    },
    /// A Service's ready endpoints, on `port`.
    Service {
        namespace: String,
        name: String,
        port: AgentPort,
    },
}

/// Which port of the agents' EndpointSlices a hub pulls: the pods' port
/// (a Service's `targetPort`, as the slices list it resolved), not the
/// Service's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentPort {
    Number(u16),
    /// The slice's port of that name.
    Named(String),
    /// Not said: the slice's port named `http` (as flowtap's manifests
    /// name it), else its only port, else [`DEFAULT_AGENT_PORT`].
    Unsaid,
}

impl AgentPort {
    /// The port to pull an endpoint on, from its slice's ports; where no
    /// port has the name asked for, why not.
    pub fn of(&self, ports: &[(Option<Arc<str>>, u16)]) -> Result<u16, String> {
        let named = |wanted: &str| {
            ports
                .iter()
                .find(|(name, _)| name.as_deref() == Some(wanted))
                .map(|&(_, port)| port)
        };
        match self {
            AgentPort::Number(port) => Ok(*port),
            AgentPort::Named(name) => {
                named(name).ok_or_else(|| format!("its EndpointSlice has no port named {name}"))
            }
            AgentPort::Unsaid => Ok(named("http").unwrap_or(match ports {
                [(_, only)] => *only,
                _ => DEFAULT_AGENT_PORT,
            })),
        }
    }
}

impl std::fmt::Display for AgentPort {
    /// As given after the Service's name (`:8898`, `:http`), or nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentPort::Number(port) => write!(f, ":{port}"),
            AgentPort::Named(name) => write!(f, ":{name}"),
            AgentPort::Unsaid => Ok(()),
        }
    }
}

/// The port agents serve their data on unless told otherwise: flowtap's
/// default `--listen`.
pub const DEFAULT_AGENT_PORT: u16 = 8898;

impl AgentSource {
    /// `NAME:PORT` for `--agents-dns`.
    pub fn dns(text: &str) -> Result<AgentSource, String> {
        let (name, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected NAME:PORT"))?;
        // An IPv6 address as URLs write it (`[::1]:8898`): the brackets
        // are no part of it (the resolver found no such name).
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if name.is_empty() {
            return Err(format!("{text:?}: no name"));
        }
        let port = client::parse_port(text, port)?;
        Ok(AgentSource::Dns {
            name: name.to_owned(),
            port,
        })
    }

    /// `NAMESPACE/NAME[:PORT]` for `--agents-service`, PORT a number or a
    /// port's name ([`AgentPort`]).
    pub fn service(text: &str) -> Result<AgentSource, String> {
        let (service, port) = match text.rsplit_once(':') {
            // A port's name: lower-case letters, digits and dashes, with a
            // letter (IANA_SVC_NAME).
            Some((s, p))
                if p.bytes().any(|b| b.is_ascii_lowercase())
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                (s, AgentPort::Named(p.to_owned()))
            }
            Some((s, p)) => (s, AgentPort::Number(client::parse_port(text, p)?)),
            None => (text, AgentPort::Unsaid),
        };
        let (namespace, name) = service
            .split_once('/')
            .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty())
            .ok_or_else(|| format!("{text:?}: expected NAMESPACE/NAME[:PORT]"))?;
        Ok(AgentSource::Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        })
    }
}

/// An agent (or a whole source) that is there but is not pulled, and why:
/// the coverage names it missing, so that what it would have seen is not
/// passed off as no traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpulled {
    pub name: String,
    pub reason: String,
    /// The node it is on, when discovery says (an EndpointSlice does).
    pub node: Option<Arc<str>>,
}

/// What the sources name now.
#[derive(Debug, Default)]
pub struct Found {
    /// The agents to pull, each once, in a stable order.
    pub agents: Vec<AgentUrl>,
    /// The agents and sources known to be there but not pulled.
    pub unpulled: Vec<Unpulled>,
    /// The node of each agent to pull, by name, when discovery says (an
    /// EndpointSlice does): a missing agent is named with its node.
    pub nodes: std::collections::HashMap<String, Arc<str>>,
}

#[derive(Clone, Debug)]
pub struct Discovery {
    sources: Vec<AgentSource>,
    /// Per source, by position: what its DNS name last resolved to.
    lookups: Arc<Mutex<Vec<Lookup>>>,
}

#[derive(Debug, Default)]
struct Lookup {
    /// The addresses of the last lookup that found any.
    last: Vec<SocketAddr>,
    /// A lookup still under way after its round gave up on it: the next
    /// round waits for it rather than starting another, so a stalled
    /// resolver holds one lookup a name, not one a round.
    pending: Option<JoinHandle<std::io::Result<Vec<SocketAddr>>>>,
    /// Whether the last lookup failed (logged once a change).
    failing: bool,
}

impl Discovery {
    pub fn new(sources: Vec<AgentSource>) -> Discovery {
        let lookups = sources.iter().map(|_| Lookup::default()).collect();
        Discovery {
            sources,
            lookups: Arc::new(Mutex::new(lookups)),
        }
    }

    /// The agents every source names now, each once, in a stable order,
    /// and those it knows of but that are not to be pulled: an endpoint of
    /// the agents' Service that is not ready, a source that names none. A
    /// DNS name is looked up within `within`; when that fails, its agents
    /// are the addresses it last resolved to (a headless Service's name has
    /// none while all its pods restart, and a stalled resolver must not
    /// make the agents vanish from the coverage either).
    pub async fn agents(&self, inventory: Option<&Inventory>, within: Duration) -> Found {
        let mut found = Found::default();
        // Every name looked up at once: one after another, each stalled
        // name added its whole wait to the round.
        let lookups = self
            .sources
            .iter()
            .enumerate()
            .map(|(at, source)| async move {
                match source {
                    AgentSource::Dns { name, port } => {
                        Some(self.resolve(at, name, *port, within).await)
                    }
                    _ => None,
                }
            });
        let mut lookups = futures::future::join_all(lookups).await.into_iter();
        for source in &self.sources {
            let lookup = lookups.next().flatten();
            match source {
                AgentSource::Url(url) => found.agents.push(url.clone()),
                AgentSource::Dns { name, port } => match lookup.expect("a lookup for every name") {
                    Ok(addrs) => found.agents.extend(addrs.into_iter().map(authority)),
                    Err(reason) => found.unpulled.push(Unpulled {
                        name: format!("dns:{name}:{port}"),
                        reason,
                        node: None,
                    }),
                },
                AgentSource::Service {
                    namespace,
                    name,
                    port,
                } => {
                    let endpoints =
                        inventory.map_or(&[][..], |inv| inv.endpoints_of(namespace, name));
                    let source = format!("service:{namespace}/{name}{port}");
                    if endpoints.is_empty() {
                        let reason = match inventory {
                            Some(inv) if inv.complete => {
                                "the Service has no endpoints: no agent pod is running"
                            }
                            // An empty answer then says nothing: the
                            // watch may not have listed the slices yet, or
                            // cannot reach the API (`flowtap_k8s_synced`,
                            // and the log, say which).
                            Some(_) => NOT_LISTED,
                            None => NOT_LOADED,
                        };
                        found.unpulled.push(Unpulled {
                            name: source.clone(),
                            reason: reason.to_owned(),
                            node: None,
                        });
                    }
                    for endpoint in endpoints {
                        let on = match port.of(&endpoint.ports) {
                            Ok(on) => on,
                            Err(reason) => {
                                found.unpulled.push(Unpulled {
                                    name: format!("{source} {}", endpoint.ip),
                                    reason,
                                    node: endpoint.node.clone(),
                                });
                                continue;
                            }
                        };
                        let agent = authority(SocketAddr::new(endpoint.ip, on));
                        let reason = match endpoint.state {
                            EndpointState::Serving => {
                                if let Some(node) = &endpoint.node {
                                    found.nodes.insert(agent.name(), node.clone());
                                }
                                found.agents.push(agent);
                                continue;
                            }
                            EndpointState::NotReady => {
                                "not ready (its EndpointSlice says so): starting, \
                                 or failing its readiness probe"
                            }
                            EndpointState::Terminating => {
                                "terminating (its EndpointSlice says so): its pod is \
                                 shutting down, in a rollout or a drain"
                            }
                        };
                        found.unpulled.push(Unpulled {
                            name: agent.name(),
                            reason: reason.to_owned(),
                            node: endpoint.node.clone(),
                        });
                    }
                }
            }
        }
        found.agents.sort();
        found.agents.dedup();
        // One pulled through another source is not missing.
        let pulled: Vec<String> = found.agents.iter().map(AgentUrl::name).collect();
        found.unpulled.retain(|u| !pulled.contains(&u.name));
        found.unpulled.sort_by(|a, b| a.name.cmp(&b.name));
        found.unpulled.dedup_by(|a, b| a.name == b.name);
        found
    }

    /// The addresses to pull for the DNS name of source `at`: a lookup's,
    /// or the last ones found when it fails or takes longer than `within`;
    /// an error only while the name has never resolved.
    async fn resolve(
        &self,
        at: usize,
        name: &str,
        port: u16,
        within: Duration,
    ) -> Result<Vec<SocketAddr>, String> {
        let pending = self.lookups.lock().expect("lookups lock")[at]
            .pending
            .take();
        let mut lookup = pending.unwrap_or_else(|| {
            let host = name.to_owned();
            tokio::spawn(async move {
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map(Iterator::collect)
            })
        });
        let (outcome, late) = match tokio::time::timeout(within, &mut lookup).await {
            Ok(Ok(Ok(addrs))) => (Ok(addrs), None),
            Ok(Ok(Err(e))) => (Err(e.to_string()), None),
            Ok(Err(e)) => (Err(format!("the lookup failed: {e}")), None),
            Err(_) => (
                Err(format!("not resolved within {:.1} s", within.as_secs_f64())),
                Some(lookup),
            ),
        };
        let mut lookups = self.lookups.lock().expect("lookups lock");
        let state = &mut lookups[at];
        state.pending = late;
        let resolved = remember(&mut state.last, outcome);
        // Failing: no fresh addresses, whether or not there are kept ones.
        let failing = !matches!(resolved, Ok((true, _)));
        if failing != state.failing {
            state.failing = failing;
            match &resolved {
                Ok((true, addrs)) => {
                    tracing::info!(%name, agents = addrs.len(), "agents' DNS name resolves again")
                }
                Ok((false, addrs)) => tracing::warn!(
                    %name,
                    agents = addrs.len(),
                    "agents' DNS name does not resolve: pulling the addresses it last resolved to"
                ),
                Err(error) => tracing::warn!(%name, %error, "agents' DNS name does not resolve"),
            }
        }
        resolved.map(|(_, addrs)| addrs)
    }
}

/// What a DNS name's agents are, given a lookup's `outcome` and the
/// addresses `last` found: the lookup's addresses if it found any (and they
/// are remembered), else the last ones; `fresh` says which.
fn remember(
    last: &mut Vec<SocketAddr>,
    outcome: Result<Vec<SocketAddr>, String>,
) -> Result<(bool, Vec<SocketAddr>), String> {
    let error = match outcome {
        Ok(addrs) if !addrs.is_empty() => {
            last.clone_from(&addrs);
            return Ok((true, addrs));
        }
        Ok(_) => "resolves to no address".to_owned(),
        Err(e) => e,
    };
    if last.is_empty() {
        Err(format!("does not resolve: {error}"))
    } else {
        Ok((false, last.clone()))
    }
}

fn authority(addr: SocketAddr) -> AgentUrl {
    AgentUrl {
        authority: addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            AgentSource::service("monitoring/flowtap-agents").unwrap(),
            AgentSource::Service {
                namespace: "monitoring".into(),
                name: "flowtap-agents".into(),
                port: AgentPort::Unsaid
            }
        );
        assert_eq!(
            AgentSource::service("monitoring/flowtap-agents:http-2").unwrap(),
            AgentSource::Service {
                namespace: "monitoring".into(),
                name: "flowtap-agents".into(),
                port: AgentPort::Named("http-2".into())
            }
        );
        // Refused at start rather than failing every pull: no port 0, no
        // empty name.
        for bad in [
            "flowtap",
            "monitoring/flowtap-agents:0",
            "/agents",
            "monitoring/",
        ] {
            assert!(AgentSource::service(bad).is_err(), "{bad}");
        }
        for bad in ["agents.local", "agents.local:0", ":8898", "[]:8898"] {
            assert!(AgentSource::dns(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AgentSource::dns("[::1]:9000").unwrap(),
            AgentSource::Dns {
                name: "::1".into(),
                port: 9000
            }
        );
        assert_eq!(
            AgentSource::dns("agents.local:9000").unwrap(),
            AgentSource::Dns {
                name: "agents.local".into(),
                port: 9000
            }
        );
    }

    /// The port pulled is the slices' (the pods' port, which the
    /// Service's own may differ from), by number, by name, or unsaid.
    #[test]
    fn the_port_pulled_is_the_slices() {
        let ports = |list: &[(Option<&str>, u16)]| -> Vec<(Option<Arc<str>>, u16)> {
            list.iter().map(|&(n, p)| (n.map(Arc::from), p)).collect()
        };
        let two = ports(&[(Some("admin"), 8899), (Some("http"), 18190)]);
        assert_eq!(AgentPort::Unsaid.of(&two), Ok(18190));
        assert_eq!(AgentPort::Named("admin".into()).of(&two), Ok(8899));
        assert_eq!(
            AgentPort::Named("metrics".into()).of(&two),
            Err("its EndpointSlice has no port named metrics".to_owned())
        );
        assert_eq!(AgentPort::Number(9000).of(&two), Ok(9000));
        assert_eq!(AgentPort::Unsaid.of(&ports(&[(None, 7000)])), Ok(7000));
        let unnamed = ports(&[(Some("a"), 1), (Some("b"), 2)]);
        assert_eq!(AgentPort::Unsaid.of(&unnamed), Ok(DEFAULT_AGENT_PORT));
        assert_eq!(AgentPort::Unsaid.of(&[]), Ok(DEFAULT_AGENT_PORT));
    }

    const WITHIN: Duration = Duration::from_secs(2);

    #[tokio::test(flavor = "current_thread")]
    async fn every_source_each_agent_once() {
        let d = Discovery::new(vec![
            AgentSource::Url(AgentUrl::parse("http://127.0.0.1:9").unwrap()),
            AgentSource::dns("localhost:9").unwrap(),
        ]);
        let found = d.agents(None, WITHIN).await;
        let agents = &found.agents;
        assert!(
            agents.iter().any(|a| a.authority == "127.0.0.1:9"),
            "{agents:?}"
        );
        assert_eq!(
            agents
                .iter()
                .filter(|a| a.authority == "127.0.0.1:9")
                .count(),
            1
        );
        assert_eq!(found.unpulled, [], "localhost resolves");
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_dns_name_that_stops_resolving_keeps_the_agents_it_last_resolved_to() {
        let mut last = Vec::new();
        let error = remember(&mut last, Err("NXDOMAIN".into())).unwrap_err();
        assert_eq!(error, "does not resolve: NXDOMAIN", "never resolved");
        let two = vec![addr("198.18.0.1:8898"), addr("198.18.0.2:8898")];
        assert_eq!(
            remember(&mut last, Ok(two.clone())),
            Ok((true, two.clone()))
        );
        // All the Service's pods restarting: the name has no address, or the
        // resolver does not answer; the agents are still expected.
        assert_eq!(
            remember(&mut last, Ok(Vec::new())),
            Ok((false, two.clone()))
        );
        assert_eq!(
            remember(&mut last, Err("not resolved within 1.0 s".into())),
            Ok((false, two))
        );
        // What the name resolves to next replaces them.
        let one = vec![addr("198.18.0.3:8898")];
        assert_eq!(
            remember(&mut last, Ok(one.clone())),
            Ok((true, one.clone()))
        );
        assert_eq!(last, one);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dns_name_that_never_resolved_is_named_missing() {
        let d = Discovery::new(vec![
            AgentSource::dns("flowtap-agents.invalid:8898").unwrap(),
        ]);
        let found = d.agents(None, WITHIN).await;
        assert_eq!(found.agents, []);
        let [missing] = &found.unpulled[..] else {
            panic!("{found:?}")
        };
        assert_eq!(missing.name, "dns:flowtap-agents.invalid:8898");
        assert!(
            missing.reason.starts_with("does not resolve: "),
            "{missing:?}"
        );
    }

    /// The agents' Service with its EndpointSlice listing `endpoints`
    /// (JSON), as the Kubernetes names see it.
    fn inventory(endpoints: &str) -> Inventory {
        let list = format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [{{
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {{"name": "flowtap-agents-x", "namespace": "monitoring",
                    "labels": {{"kubernetes.io/service-name": "flowtap-agents"}}}},
                "addressType": "IPv4", "endpoints": {endpoints}}}]}}"#
        );
        Inventory::from_json(list.as_bytes()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn agents_of_a_service_not_ready_or_not_there_are_named_missing() {
        let d = Discovery::new(vec![
            AgentSource::service("monitoring/flowtap-agents").unwrap(),
        ]);
        let inv = inventory(
            r#"[{"addresses": ["198.18.0.1"], "conditions": {"ready": true}},
                {"addresses": ["198.18.0.2"], "conditions": {"ready": false}, "nodeName": "n2"},
                {"addresses": ["198.18.0.3"], "conditions": {"ready": false, "terminating": true},
                 "nodeName": "n3"},
                {"addresses": ["198.18.0.4"],
                 "conditions": {"ready": false, "serving": true, "terminating": true}}]"#,
        );
        let found = d.agents(Some(&inv), WITHIN).await;
        let names = |agents: &[AgentUrl]| agents.iter().map(AgentUrl::name).collect::<Vec<_>>();
        // One shutting down but still serving (its grace period) is pulled.
        assert_eq!(
            names(&found.agents),
            ["http://198.18.0.1:8898", "http://198.18.0.4:8898"]
        );
        // The others are named missing, with their nodes: a node whose
        // agent is restarting is not a node without traffic.
        let [not_ready, terminating] = &found.unpulled[..] else {
            panic!("{found:?}")
        };
        assert_eq!(not_ready.name, "http://198.18.0.2:8898");
        assert!(not_ready.reason.starts_with("not ready"), "{not_ready:?}");
        assert_eq!(not_ready.node.as_deref(), Some("n2"));
        assert_eq!(terminating.name, "http://198.18.0.3:8898");
        assert!(
            terminating.reason.starts_with("terminating"),
            "{terminating:?}"
        );
        assert_eq!(terminating.node.as_deref(), Some("n3"));

        // No agent pod at all, or no names yet: the source itself is missing.
        let none = d.agents(Some(&inventory("[]")), WITHIN).await;
        assert_eq!(none.agents, []);
        assert_eq!(
            none.unpulled,
            [Unpulled {
                name: "service:monitoring/flowtap-agents".into(),
                reason: "the Service has no endpoints: no agent pod is running".into(),
                node: None,
            }]
        );
        // A watch that has not listed every kind yet (or cannot reach the
        // API) knows no endpoints: that is not "no agent pod".
        let mut unsynced = inventory("[]");
        unsynced.complete = false;
        let unsynced = d.agents(Some(&unsynced), WITHIN).await;
        assert!(
            unsynced.unpulled[0]
                .reason
                .starts_with("the Kubernetes API has not been listed yet"),
            "{unsynced:?}"
        );
        let unloaded = d.agents(None, WITHIN).await;
        assert_eq!(
            unloaded.unpulled[0].reason,
            "the Kubernetes names are not loaded yet"
        );
    }
}
