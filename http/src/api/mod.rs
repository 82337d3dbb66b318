//! The MCP L4 REST endpoints as one function from (path, query, view) to a
//! response, shared by the HTTP server, `--dump` and the MCP tools.

pub mod query;
pub mod render;
pub mod summary;

use serde::Serialize;

use crate::view::View;
use query::{ApiError, parse_flow_query};
use render::{FlowsBody, RenderedFlows};

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

/// Answers a GET of `path` with query string `query` (without the `?`).
pub fn respond(view: &View, path: &str, query: &str) -> ApiResponse {
    match path {
        FLOWS_PATH => match flows(view, query) {
            Ok(body) => ApiResponse::json(200, &body),
            Err(e) => ApiResponse::error(&e),
        },
        SUMMARY_PATH => {
            if let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).next() {
                return ApiResponse::error(&ApiError::bad_parameter(
                    &name,
                    format!("{SUMMARY_PATH} takes no parameters, got {name:?}"),
                ));
            }
            ApiResponse {
                status: 200,
                body: view.summary_json().to_vec(),
            }
        }
        _ => ApiResponse::error(&ApiError {
            status: 404,
            message: format!("no such endpoint: {path}"),
            parameter: None,
        }),
    }
}

/// Splits `PATH?QUERY` as given to `--dump`.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

fn flows<'a>(view: &'a View, query: &str) -> Result<FlowsBody<'a>, ApiError> {
    let q = parse_flow_query(query)?;
    let snapshot = &*view.snapshot;
    let total = snapshot.flows.len();
    let flows: Vec<_> = snapshot.flows.iter().take(q.limit).collect();
    Ok(FlowsBody {
        truncated: flows.len() < total,
        flows: RenderedFlows {
            flows,
            snapshot,
            format: q.format,
        },
        total,
    })
}
