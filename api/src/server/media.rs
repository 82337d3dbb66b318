//! Media types as requests name them: the Content-Type of a body, and how
//! much an Accept header wants a type (RFC 9110 8.3.1, 12.5.1). Compared
//! as parsed types, not as text: `application/jsonlines` is no JSON, and
//! `application/json;q=0` refuses it.

/// A Content-Type's type and subtype, lowercased, its parameters left out.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// How an Accept header takes `media` (lowercase `type/subtype`): the
/// weight (`q`) of the most specific range naming it, and how specific
/// that range is (3: the type itself, 2: `type/*`, 1: `*/*`); `(0, 0.0)`
/// when none names it. A weight of 0 refuses it as surely as no range.
pub fn preference(accept: &str, media: &str) -> (u8, f32) {
    let mut best = (0u8, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let named = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        let specificity = match named.split_once('/') {
            _ if named == media => 3,
            Some((kind, "*")) if media.split_once('/').is_some_and(|(k, _)| k == kind) => 2,
            Some(("*", "*")) => 1,
            _ => 0,
        };
        if specificity > best.0 {
            best = (specificity, q);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_compared_parsed() {
        assert_eq!(
            essence("Application/JSON; charset=utf-8"),
            "application/json"
        );
        assert_eq!(essence("application/jsonlines"), "application/jsonlines");
        let json = "application/json";
        assert_eq!(
            preference("application/json, text/event-stream", json),
            (3, 1.0)
        );
        assert_eq!(
            preference("application/json;q=0, text/event-stream", json).1,
            0.0
        );
        assert_eq!(preference("application/jsonx", json), (0, 0.0));
        assert_eq!(preference("application/*;q=0.5", json), (2, 0.5));
        assert_eq!(preference("*/*", json), (1, 1.0));
        // The most specific range decides, wherever it stands.
        assert_eq!(preference("*/*, application/json;q=0", json).1, 0.0);
    }
}
