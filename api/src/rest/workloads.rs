//! `GET /mcp/workloads` (and the `list_workloads` tool): every pod, service
//! and namespace the Kubernetes names know, with the flows in and out of it,
//! their bytes and when it was last seen, so "which pods in shop have no
//! traffic right now?" is one call. A workload is active when a flow of the
//! snapshot has it as an endpoint: a flow stays in the snapshot until the
//! idle timeout after its last packet, closed or not (live: TCP 300 s, UDP
//! 60 s; `--tcp-timeout`, `--udp-timeout`), so "idle" means no packet for at
//! least that long.

use std::collections::HashMap;
use std::sync::Arc;

use pipeline::flow::Side;
use serde::Serialize;

use super::coverage::CoverageJson;
use super::query::ApiError;
use super::render::iso8601;
use crate::view::View;
use k8s::WorkloadKind;

pub const PATH: &str = "/mcp/workloads";
/// Entries one answer lists by default.
pub const DEFAULT_LIMIT: usize = 1000;

/// The query parameters, for the MCP schema and the errors.
pub const PARAMS: &[(&str, &str)] = &[
    ("namespace", "only workloads of this namespace"),
    (
        "state",
        "active (in a flow of the snapshot), idle (in none), or all (the default)",
    ),
    ("kind", "pod, service or namespace (default: all three)"),
    (
        "sort",
        "name (kind, namespace, name: the default), bytes (in + out), flows (in + out) or last_seen; \
         the most first",
    ),
    (
        "limit",
        "entries at most (default 1000); total counts every match",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    All,
    Active,
    Idle,
}

/// The order of an answer, which `limit` cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sort {
    /// By kind, namespace and name.
    #[default]
    Name,
    /// Bytes in and out, the most first.
    Bytes,
    /// Flows in and out, the most first.
    Flows,
    /// The latest last packet first.
    LastSeen,
}

impl Sort {
    /// Each order by its name in the query.
    pub const BY_NAME: [(&str, Sort); 4] = [
        ("name", Sort::Name),
        ("bytes", Sort::Bytes),
        ("flows", Sort::Flows),
        ("last_seen", Sort::LastSeen),
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pod,
    Service,
    Namespace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadQuery {
    pub namespace: Option<String>,
    pub state: State,
    pub kind: Option<Kind>,
    pub sort: Sort,
    pub limit: usize,
}

impl Default for WorkloadQuery {
    fn default() -> Self {
        WorkloadQuery {
            namespace: None,
            state: State::All,
            kind: None,
            sort: Sort::Name,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// Parses the query's (name, value) pairs; errors name the parameter.
pub fn parse<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<WorkloadQuery, ApiError> {
    let mut q = WorkloadQuery::default();
    for (name, value) in pairs {
        match name {
            "namespace" => q.namespace = Some(super::query::non_empty(name, value)?),
            "state" => {
                q.state = match value {
                    "all" => State::All,
                    "active" => State::Active,
                    "idle" => State::Idle,
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "state",
                            format!("state must be active, idle or all, got {value:?}"),
                        ));
                    }
                }
            }
            "kind" => {
                q.kind = Some(match value {
                    "pod" => Kind::Pod,
                    "service" => Kind::Service,
                    "namespace" => Kind::Namespace,
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "kind",
                            format!("kind must be pod, service or namespace, got {value:?}"),
                        ));
                    }
                })
            }
            "sort" => q.sort = super::query::choice(name, value, &Sort::BY_NAME)?,
            "limit" => {
                q.limit =
                    usize::try_from(super::query::unsigned(name, value)?).unwrap_or(usize::MAX)
            }
            other => {
                let known: Vec<&str> = PARAMS.iter().map(|(n, _)| *n).collect();
                return Err(ApiError::bad_parameter(
                    other,
                    format!(
                        "unknown parameter {other:?}; {PATH} takes {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// One workload and its traffic.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct WorkloadJson {
    pub kind: Kind,
    pub namespace: Arc<str>,
    /// The namespace's own name for `kind=namespace`.
    pub name: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    pub active: bool,
    /// Flows in which it is the server.
    pub flows_in: u64,
    /// Flows in which it is the client.
    pub flows_out: u64,
    /// Bytes it received, and sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Its flows' last packet, ISO 8601; absent when idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(skip)]
    last_seen_ns: u64,
}

#[derive(Serialize, Debug)]
pub struct WorkloadsAnswer {
    pub workloads: Vec<WorkloadJson>,
    pub total: usize,
    pub truncated: bool,
    /// Whether the Kubernetes names are loaded and whole: without them
    /// there are no workloads to list, and while a watch has not listed
    /// every kind (a list refused, failing) what is missing, or idle, may
    /// only be unknown.
    pub names_known: bool,
    pub coverage: CoverageJson,
}

type Key = (Kind, Arc<str>, Arc<str>);

/// Every workload of `view`'s inventory with its traffic, sorted by kind,
/// namespace and name (computed once per view).
pub fn all(view: &View) -> Vec<WorkloadJson> {
    let Some(inventory) = view.inventory.as_deref() else {
        return Vec::new();
    };
    let mut entries: Vec<WorkloadJson> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut add = |kind: Kind, ns: &Arc<str>, name: &Arc<str>, node: Option<Arc<str>>| {
        index
            .entry((kind, ns.clone(), name.clone()))
            .or_insert_with(|| {
                entries.push(WorkloadJson {
                    kind,
                    namespace: ns.clone(),
                    name: name.clone(),
                    node,
                    active: false,
                    flows_in: 0,
                    flows_out: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                    last_seen: None,
                    last_seen_ns: 0,
                });
                entries.len() - 1
            });
    };
    for w in &inventory.workloads {
        let kind = match w.kind {
            WorkloadKind::Pod => Kind::Pod,
            WorkloadKind::Service => Kind::Service,
        };
        add(kind, &w.ns, &w.name, w.node.clone());
        add(Kind::Namespace, &w.ns, &w.ns, None);
    }
    for (i, f) in view.flows().iter().enumerate() {
        for side in Side::BOTH {
            let sent = f.sent[side].bytes;
            let received = f.sent[side.other()].bytes;
            let ns = view.ns(i, side);
            let mut touched: Vec<Key> = Vec::with_capacity(3);
            if let (Some(ns), Some(pod)) = (ns, view.pod(i, side)) {
                touched.push((Kind::Pod, ns.clone(), pod.clone()));
            }
            // A service is what clients connect to: its pods' own
            // connections out are theirs, not the service's (a service
            // whose pods only call out is idle).
            if side == Side::Server
                && let (Some(ns), Some(svc)) = (ns, view.svc(i, side))
            {
                touched.push((Kind::Service, ns.clone(), svc.clone()));
            }
            if let Some(ns) = ns {
                touched.push((Kind::Namespace, ns.clone(), ns.clone()));
            }
            for key in touched {
                let Some(&at) = index.get(&key) else { continue };
                let e = &mut entries[at];
                e.active = true;
                match side {
                    Side::Server => e.flows_in += 1,
                    Side::Client => e.flows_out += 1,
                }
                e.bytes_out = e.bytes_out.saturating_add(sent);
                e.bytes_in = e.bytes_in.saturating_add(received);
                e.last_seen_ns = e.last_seen_ns.max(f.last_seen_ns);
            }
        }
    }
    for e in &mut entries {
        e.last_seen = e.active.then(|| iso8601(e.last_seen_ns));
    }
    entries.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    entries
}

/// The answer to `q` from `view`.
pub fn answer(view: &View, q: &WorkloadQuery) -> WorkloadsAnswer {
    let all = view.workloads();
    let mut matching: Vec<&WorkloadJson> = all
        .iter()
        .filter(|w| q.kind.is_none_or(|k| k == w.kind))
        .filter(|w| q.namespace.as_deref().is_none_or(|ns| *w.namespace == *ns))
        .filter(|w| match q.state {
            State::All => true,
            State::Active => w.active,
            State::Idle => !w.active,
        })
        .collect();
    // Stable: ties keep the order by kind, namespace and name.
    match q.sort {
        Sort::Name => {}
        Sort::Bytes => {
            matching.sort_by_key(|w| std::cmp::Reverse(w.bytes_in.saturating_add(w.bytes_out)))
        }
        Sort::Flows => matching.sort_by_key(|w| std::cmp::Reverse(w.flows_in + w.flows_out)),
        Sort::LastSeen => matching.sort_by_key(|w| std::cmp::Reverse(w.last_seen_ns)),
    }
    let total = matching.len();
    let workloads: Vec<WorkloadJson> = matching.into_iter().take(q.limit).cloned().collect();
    WorkloadsAnswer {
        truncated: workloads.len() < total,
        workloads,
        total,
        names_known: view.inventory.as_ref().is_some_and(|i| i.complete),
        coverage: (*view.coverage()).clone(),
    }
}
