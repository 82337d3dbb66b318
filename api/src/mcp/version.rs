//! MCP protocol revisions: which flowtap speaks, how a client's choice is
//! negotiated, and what each revision's messages may carry.

/// The revisions negotiated by the `initialize` handshake, oldest first.
pub const HANDSHAKE: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The stateless revisions: no handshake, every request names its revision.
pub const STATELESS: &[&str] = &["2026-07-28"];

/// A revision flowtap speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(&'static str);

impl Version {
    /// The newest revision with a handshake: the answer to an `initialize`
    /// that asks for one flowtap does not speak.
    pub const LATEST_HANDSHAKE: Version = Version("2025-11-25");

    /// The revision a request without an `MCP-Protocol-Version` header is
    /// taken to speak when nothing else tells (the transport's rule).
    pub const DEFAULT_HTTP: Version = Version("2025-03-26");

    /// `text` if flowtap speaks it.
    pub fn parse(text: &str) -> Option<Version> {
        HANDSHAKE
            .iter()
            .chain(STATELESS)
            .find(|v| **v == text)
            .map(|v| Version(v))
    }

    /// The handshake's rule: the client's revision when flowtap speaks it
    /// (and it has a handshake), else flowtap's latest.
    pub fn negotiate(requested: &str) -> Version {
        match Version::parse(requested) {
            Some(v) if !v.is_stateless() => v,
            _ => Version::LATEST_HANDSHAKE,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// 2026-07-28 and later: no `initialize`, no sessions, `server/discover`.
    pub fn is_stateless(self) -> bool {
        STATELESS.contains(&self.0)
    }

    /// Tool annotations (2025-03-26 and later).
    pub fn has_annotations(self) -> bool {
        self.0 >= "2025-03-26"
    }

    /// `outputSchema`, `structuredContent` and `title` (2025-06-18 and later).
    pub fn has_structured_output(self) -> bool {
        self.0 >= "2025-06-18"
    }

    /// `title` on tools, prompts and server info (2025-06-18 and later).
    pub fn has_titles(self) -> bool {
        self.has_structured_output()
    }

    /// JSON-RPC batches: 2025-03-26 only (added then, removed in 2025-06-18).
    pub fn allows_batches(self) -> bool {
        self.0 == "2025-03-26"
    }
}

/// Every revision, oldest first, for messages and `server/discover`.
pub fn all() -> impl Iterator<Item = &'static str> {
    HANDSHAKE.iter().chain(STATELESS).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_and_features() {
        assert_eq!(Version::negotiate("2025-06-18").as_str(), "2025-06-18");
        assert_eq!(Version::negotiate("2024-11-05").as_str(), "2024-11-05");
        assert_eq!(Version::negotiate("1999-01-01"), Version::LATEST_HANDSHAKE);
        assert_eq!(Version::negotiate("2026-07-28"), Version::LATEST_HANDSHAKE);
        assert_eq!(Version::parse("2025-13-01"), None);
        let v = |s| Version::parse(s).unwrap();
        assert!(!v("2024-11-05").has_annotations() && v("2025-03-26").has_annotations());
        assert!(
            !v("2025-03-26").has_structured_output() && v("2025-06-18").has_structured_output()
        );
        assert!(v("2025-03-26").allows_batches() && !v("2025-06-18").allows_batches());
        assert!(v("2026-07-28").is_stateless() && !v("2025-11-25").is_stateless());
    }
}
