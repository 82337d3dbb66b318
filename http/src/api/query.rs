//! Query parameters of `GET /mcp/flows`, parsed and validated in one place
//! so that HTTP, `--dump` and MCP tool calls reject the same mistakes.

use std::fmt;

/// How each flow is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// The reference's LLM-oriented shape with totals.
    #[default]
    Compact,
    /// Compact plus rates, timestamps, container ids.
    Full,
    /// flowtap's internal record with its native field names.
    Raw,
}

impl Format {
    pub const VALUES: &'static str = "compact, full, raw";
}

/// Flows returned when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    pub format: Format,
    pub limit: usize,
}

impl Default for FlowQuery {
    fn default() -> Self {
        FlowQuery {
            format: Format::Compact,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A request the API refuses, with the parameter at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            parameter: Some(parameter.to_owned()),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.parameter {
            Some(p) => write!(f, "{} (parameter {p})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses the query string of `/mcp/flows`.
pub fn parse_flow_query(raw: &str) -> Result<FlowQuery, ApiError> {
    let mut query = FlowQuery::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(ApiError::bad_parameter(
                &name,
                format!("parameter {name} given more than once"),
            ));
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "format" => {
                query.format = match value.as_ref() {
                    "compact" => Format::Compact,
                    "full" => Format::Full,
                    "raw" => Format::Raw,
                    other => {
                        return Err(ApiError::bad_parameter(
                            "format",
                            format!(
                                "unknown format {other:?}; expected one of {}",
                                Format::VALUES
                            ),
                        ));
                    }
                }
            }
            "limit" => query.limit = parse_limit(&value)?,
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    format!("unknown parameter {other:?}"),
                ));
            }
        }
    }
    Ok(query)
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value.parse::<usize>().map_err(|_| {
        ApiError::bad_parameter(
            "limit",
            format!("limit must be a non-negative integer, got {value:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse_flow_query("").unwrap(), FlowQuery::default());
        let q = parse_flow_query("format=full&limit=1000000").unwrap();
        assert_eq!((q.format, q.limit), (Format::Full, 1_000_000));
        assert_eq!(parse_flow_query("format=raw").unwrap().format, Format::Raw);
    }

    #[test]
    fn errors_name_the_parameter() {
        for (q, param) in [
            ("format=xml", "format"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=", "limit"),
            ("bogus=1", "bogus"),
            ("limit=1&limit=2", "limit"),
        ] {
            let err = parse_flow_query(q).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.parameter.as_deref(), Some(param), "{q}");
        }
    }
}
