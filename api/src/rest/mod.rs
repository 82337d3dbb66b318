//! The MCP L4 REST endpoints as one function from (path, query, view) to a
//! response, shared by the HTTP server, `--dump` and the MCP tools.

pub mod coverage;
pub mod query;
pub mod render;
pub mod rows;
pub mod select;
pub mod summary;
pub mod workloads;

use serde::Serialize;

use crate::view::View;
use query::{ApiError, FlowQuery, Format, parse_flow_query};
use render::{Entries, FlowsAnswer};
use rows::Row;

/// A response body with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json<T: Serialize>(status: u16, value: &T) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::to_vec(value).expect("API values serialise"),
        }
    }

    /// `{"error": ..., "parameter": ...}` with the error's status.
    pub fn error(e: &ApiError) -> ApiResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            parameter: Option<&'a str>,
        }
        ApiResponse::json(
            e.status,
            &Body {
                error: &e.message,
                parameter: e.parameter.as_deref(),
            },
        )
    }
}

pub const FLOWS_PATH: &str = "/mcp/flows";
pub const SUMMARY_PATH: &str = "/mcp/flows/summary";

/// What a valid GET asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Flows(FlowQuery),
    Summary,
    Workloads(workloads::WorkloadQuery),
}

/// Checks a GET of `path` with query string `query` (without the `?`);
/// `max_limit` caps `limit` (the HTTP server's protection; `usize::MAX`
/// for none).
pub fn plan(path: &str, query: &str, max_limit: usize) -> Result<Plan, ApiError> {
    match path {
        FLOWS_PATH => {
            let q = parse_flow_query(query)?;
            if q.limit > max_limit {
                return Err(ApiError::bad_parameter(
                    "limit",
                    format!(
                        "limit {} is over this server's maximum of {max_limit}; narrow the query or aggregate",
                        q.limit
                    ),
                ));
            }
            Ok(Plan::Flows(q))
        }
        SUMMARY_PATH => {
            if let Some((name, _)) = query::query_pairs(query)?.first() {
                return Err(ApiError::bad_parameter(
                    name,
                    format!("{SUMMARY_PATH} takes no parameters, got {name:?}"),
                ));
            }
            Ok(Plan::Summary)
        }
        workloads::PATH => {
            let pairs = query::query_pairs(query)?;
            let q = workloads::parse(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
            if q.limit > max_limit {
                return Err(ApiError::bad_parameter(
                    "limit",
                    format!(
                        "limit {} is over this server's maximum of {max_limit}",
                        q.limit
                    ),
                ));
            }
            Ok(Plan::Workloads(q))
        }
        _ => Err(ApiError {
            status: 404,
            message: format!(
                "no such endpoint: {path}; try {FLOWS_PATH}, {SUMMARY_PATH} or {}",
                workloads::PATH
            ),
            parameter: None,
        }),
    }
}

/// What a plan answers with, detached from the view it was computed from.
pub enum Answer {
    Flows(FlowsAnswer),
    /// The summary's JSON, prepared with the view.
    Summary(bytes::Bytes),
    Workloads(workloads::WorkloadsAnswer),
}

/// Computes the answer to a plan from `view`.
pub fn answer(view: &View, plan: &Plan) -> Answer {
    match plan {
        Plan::Flows(q) => {
            if q.aggregate.is_some() {
                view.asked(q);
            }
            Answer::Flows(flows(view, q))
        }
        Plan::Summary => Answer::Summary(view.summary_json()),
        Plan::Workloads(q) => Answer::Workloads(workloads::answer(view, q)),
    }
}

/// Answers a GET of `path` with query string `query` (without the `?`),
/// whole (for `--dump` and tests).
pub fn respond(view: &View, path: &str, query: &str) -> ApiResponse {
    match plan(path, query, usize::MAX) {
        Ok(plan) => ApiResponse {
            status: 200,
            body: match answer(view, &plan) {
                Answer::Flows(f) => serde_json::to_vec(&f).expect("answers serialise"),
                Answer::Summary(s) => s.to_vec(),
                Answer::Workloads(w) => serde_json::to_vec(&w).expect("answers serialise"),
            },
        },
        Err(e) => ApiResponse::error(&e),
    }
}

/// Splits `PATH?QUERY` as given to `--dump`.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The `/mcp/flows` answer to a parsed query.
pub fn flows(view: &View, q: &FlowQuery) -> FlowsAnswer {
    let n = view.flows().len();
    let entries;
    let total;
    match q.aggregate {
        None => {
            let filtered = select::filters(q) || select::thresholds(q);
            let mut indices: Vec<usize> = if filtered {
                (0..n)
                    .filter(|&i| select::matches(view, i, q))
                    .filter(|&i| select::passes_thresholds(&rows::flow_rank(&view.flows()[i]), q))
                    .collect()
            } else if q.sort == query::SortKey::Bytes {
                // The common case: no filter, snapshot order. Touch only what is returned.
                (0..n.min(q.limit)).collect()
            } else {
                (0..n).collect()
            };
            total = if filtered { indices.len() } else { n };
            select::top_flows(view, &mut indices, q.sort, q.limit);
            entries = match q.format {
                Format::Raw => Entries::Raw(
                    indices
                        .into_iter()
                        .map(|i| render::raw_flow(&view.flows()[i], &view.snapshot))
                        .collect(),
                ),
                _ => Entries::Rows {
                    rows: indices.into_iter().map(|i| Row::of_flow(view, i)).collect(),
                    full: q.format == Format::Full,
                    aggregated: false,
                },
            };
        }
        Some(by) => {
            // Computed once per view for each grouping asked for, and
            // ranked once for each order, limit and thresholds asked for:
            // repeated queries only render.
            let top = view.aggregated_top(q, || {
                let groups = view.aggregation(q, || {
                    let indices: Vec<usize> =
                        (0..n).filter(|&i| select::matches(view, i, q)).collect();
                    rows::aggregate(view, &indices, by)
                });
                // Each entry's rank read once: a lone flow's is read from
                // its record, a trip to memory each at a hub's million
                // entries. Only its placing is kept (24 bytes with the
                // entry, a third of the rank).
                let kept: Vec<_> = groups
                    .iter()
                    .filter_map(|g| {
                        let rank = g.sort_key(view);
                        select::passes_thresholds(&rank, q)
                            .then(|| (select::Placing::of(q.sort, &rank), g))
                    })
                    .collect();
                let total = kept.len();
                (select::top_groups(view, kept, q.limit), total)
            });
            total = top.1;
            entries = Entries::Rows {
                rows: top.0.clone(),
                full: q.format == Format::Full,
                aggregated: true,
            };
        }
    }
    FlowsAnswer {
        truncated: entries.len() < total,
        entries,
        total,
        coverage: view.coverage(),
    }
}
