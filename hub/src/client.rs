//! The one HTTP request a pull makes: `GET <agent>/internal/v1/feed` over
//! plain HTTP/1.1, one connection per pull (one pull per agent per
//! interval: nothing to gain from pooling), bounded in time and size.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use api::feed::PullFailure;

/// `url` as it may be shown: a user and password before the host (all up
/// to the last `@` after the scheme) replaced by `…`. An `@` in a path is
/// taken for them too: flowtap's paths and a proxy's prefix need none, and
/// a password typed with a `/` in it would otherwise be shown.
pub fn without_credentials(url: &str) -> Cow<'_, str> {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    match url[after_scheme..].rfind('@') {
        Some(at) => Cow::Owned(format!(
            "{}…{}",
            &url[..after_scheme],
            &url[after_scheme + at..]
        )),
        None => Cow::Borrowed(url),
    }
}

/// `port`, a part of `text` (said in the error): 1 to 65535.
pub fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{text:?}: {port:?} is not a port (1 to 65535)")),
    }
}

/// Refuses a URL with credentials, first (whatever else is wrong with it)
/// and without showing them: error messages reach logs and terminals. The
/// token comes from `token_option`, if the command has one.
fn refuse_credentials(text: &str, token_option: &str) -> Result<(), String> {
    match without_credentials(text) {
        Cow::Borrowed(_) => Ok(()),
        Cow::Owned(shown) if token_option.is_empty() => {
            Err(format!("{shown:?}: no credentials in the URL"))
        }
        Cow::Owned(shown) => Err(format!(
            "{shown:?}: no credentials in the URL (the token comes from {token_option})"
        )),
    }
}

/// An agent's address as the hub reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentUrl {
    /// `host:port`, as given or discovered.
    pub authority: String,
}

impl AgentUrl {
    /// Parses `http://host[:port]` (port 80 if none; https is not spoken:
    /// agents are reached inside the cluster, with a bearer token). A path
    /// (flowtap is asked at its root: `flowtap top` behind a proxy's
    /// sub-path asked the proxy's root), a query, a fragment, credentials
    /// or a port that is no port are refused: the hub would pull something
    /// else than meant.
    pub fn parse(text: &str) -> Result<AgentUrl, String> {
        AgentUrl::parse_with(text, "--agent-token-file")
    }

    /// A running flowtap's URL as its command-line clients take it
    /// (`flowtap top`, `mcp-stdio`, `healthcheck`): [`AgentUrl::parse_with`]'s
    /// `http://HOST[:PORT]`, then a path (a proxy's prefix, or the path to
    /// ask), given back without its trailing `/`. No query or fragment:
    /// joined to flowtap's own paths, it would ask for something else.
    pub fn parse_with_path<'t>(
        text: &'t str,
        token_option: &str,
    ) -> Result<(AgentUrl, &'t str), String> {
        refuse_credentials(text, token_option)?;
        let path_at = text
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/'))
            .map_or(text.len(), |at| "http://".len() + at);
        let (head, path) = text.split_at(path_at);
        if path.contains(['?', '#']) {
            return Err(format!("{text:?}: a flowtap URL has no query or fragment"));
        }
        let agent = AgentUrl::parse_with(head, token_option)?;
        Ok((agent, path.trim_end_matches('/')))
    }

    /// [`AgentUrl::parse`] for a URL given elsewhere than `--agent`: a
    /// credential in it is refused naming `token_option`, the option that
    /// gives the token there.
    pub fn parse_with(text: &str, token_option: &str) -> Result<AgentUrl, String> {
        refuse_credentials(text, token_option)?;
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            format!("{text:?}: flowtap is reached over http:// (it speaks no TLS)")
        })?;
        if rest.contains(['?', '#']) {
            return Err(format!("{text:?}: a flowtap URL has no query or fragment"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(format!(
                "{text:?}: a flowtap URL names no path (its paths are its own: /mcp/flows...)"
            ));
        }
        // A port follows the last ':' outside an IPv6 address's brackets.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (authority, None),
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{text:?}: no host"));
        }
        if host.contains(':') && !host.starts_with('[') {
            return Err(format!(
                "{text:?}: an IPv6 address goes in brackets, as in http://[2001:db8::1]:8898"
            ));
        }
        let port = match port {
            None => 80,
            Some(port) => parse_port(text, port)?,
        };
        Ok(AgentUrl {
            authority: format!("{host}:{port}"),
        })
    }

    pub fn name(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// Room for the feeds a round holds at once (`--max-feed-bytes-held`):
/// a body is read only once its length is taken from it, and its bytes go
/// back once the feed is decoded ([`Held`] dropped). Each feed is bounded
/// by `--max-feed-bytes`, but a round pulls every agent at once while
/// feeds are decoded one per core: without this, a cluster of large feeds
/// (200 agents of 100,000 flows: 2.8 GB) would all be held before the
/// flow bound refused most of them.
///
/// A pull waits for room (within its agent's timeout) rather than failing
/// at once: decoding gives room back within milliseconds. Room is taken
/// after the answer's head, by its `Content-Length` (an agent's feed
/// always has one), so a pull holding room is reading or decoding and
/// always gives it back: no pull waits on another that waits. An answer
/// without a length (through a proxy that re-chunks it) takes room as its
/// bytes come, without waiting: one that waited for a whole
/// `--max-feed-bytes` (by default the whole room) while its body trickled
/// in held every other agent's pull out for its timeout, round after
/// round.
pub struct FeedRoom {
    /// Free room in KiB (a semaphore counts in `u32`).
    kib: Arc<Semaphore>,
    max_bytes: usize,
    /// Pulls that found no room at once (`flowtap_hub_feed_room_waits_total`).
    waits: Arc<AtomicU64>,
}

/// Why a pull gave no answer to decode, and the whole error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub failure: PullFailure,
    pub error: String,
}

impl Failed {
    fn new(failure: PullFailure, error: String) -> Failed {
        Failed { failure, error }
    }
}

/// A feed's room, given back when dropped.
pub struct Held {
    _permit: OwnedSemaphorePermit,
}

/// An agent's feed, with the room it takes.
pub struct Pulled {
    pub body: Bytes,
    pub held: Held,
    /// When the agent published what it served, by this host's wall clock:
    /// the answer's arrival less the age the agent gave it
    /// ([`api::feed::AGE_HEADER`]; `None` where it gave none).
    pub taken_ns: Option<u64>,
}

impl FeedRoom {
    /// Room for `max_bytes` of feeds at once; `waits` counts the pulls
    /// that had to wait for some.
    pub fn new(max_bytes: usize, waits: Arc<AtomicU64>) -> FeedRoom {
        let kib = u32::try_from(max_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        FeedRoom {
            kib: Arc::new(Semaphore::new(kib as usize)),
            max_bytes,
            waits,
        }
    }

    /// Room for `bytes` (at most the whole room), waiting for it if need be.
    async fn take(&self, bytes: usize) -> Held {
        let kib = u32::try_from(bytes.min(self.max_bytes).div_ceil(1024)).unwrap_or(u32::MAX);
        let permit = match self.kib.clone().try_acquire_many_owned(kib) {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.fetch_add(1, Ordering::Relaxed);
                self.kib
                    .clone()
                    .acquire_many_owned(kib)
                    .await
                    .expect("the room's semaphore is never closed")
            }
        };
        Held { _permit: permit }
    }

    /// Grows `held` to room for `bytes`, if there is room now.
    fn grow(&self, held: &mut Held, bytes: usize) -> Result<(), Failed> {
        let kib = bytes.div_ceil(1024);
        let more = kib.saturating_sub(held._permit.num_permits());
        if more == 0 {
            return Ok(());
        }
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        match self.kib.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                held._permit.merge(permit);
                Ok(())
            }
            Err(_) => {
                // Not a wait: it fails at once.
                Err(Failed::new(
                    PullFailure::NoRoom,
                    format!(
                        "no room to hold more than {} bytes of an answer without a length: the feeds held at once reached --max-feed-bytes-held {}",
                        held._permit.num_permits() * 1024,
                        self.max_bytes
                    ),
                ))
            }
        }
    }
}

/// Bytes of a refusal's text an error quotes.
const REFUSAL_TEXT: usize = 200;

/// GETs `path` from `agent`, within `timeout`, at most `max_bytes` of body.
pub async fn get(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    fetch(agent, path, token, timeout, max_bytes, None, None)
        .await
        .map(|(body, _, _)| body)
        .map_err(|failed| failed.error)
}

/// [`get`] of a feed, once `room` can hold the body, which then holds
/// that room; an answer of another media type is refused.
pub async fn get_held(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    max_bytes: usize,
    room: &FeedRoom,
) -> Result<Pulled, Failed> {
    let (body, held, taken_ns) = fetch(
        agent,
        path,
        token,
        timeout,
        max_bytes,
        Some(room),
        Some(api::feed::CONTENT_TYPE),
    )
    .await?;
    let held = held.expect("room taken");
    Ok(Pulled {
        body,
        held,
        taken_ns,
    })
}

async fn fetch(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    max_bytes: usize,
    room: Option<&FeedRoom>,
    media: Option<&str>,
) -> Result<(Bytes, Option<Held>, Option<u64>), Failed> {
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || {
        let error = format!("no answer within {:.1} s", timeout.as_secs_f64());
        Failed::new(PullFailure::Timeout, error)
    };
    let response = tokio::time::timeout_at(deadline, request(agent, path, token))
        .await
        .map_err(|_| late())??;
    // The agent measured its age as it answered: the head's arrival, not
    // the end of the body (up to the timeout later), is the time to take
    // it from.
    let answered_ns = pipeline::time::wall_now_ns();
    let status = response.status();
    // A refusal (a wrong token, an agent shutting down) is said with the
    // start of its text, read without taking room.
    if !status.is_success() {
        let mut body = response.into_body();
        let mut text = Vec::new();
        while text.len() < REFUSAL_TEXT {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d))
                }
                _ => break,
            }
        }
        text.truncate(REFUSAL_TEXT);
        let error = format!("HTTP {status}: {}", String::from_utf8_lossy(&text));
        return Err(Failed::new(PullFailure::Refused, error));
    }
    // An answer of another type (a proxy's login page, another service on
    // the port) is named so, not decoded into a puzzling error.
    if let (Some(expected), Some(kind)) = (media, response.headers().get(CONTENT_TYPE)) {
        let said = api::server::media::essence(&String::from_utf8_lossy(kind.as_bytes()));
        if said != expected {
            let error = format!(
                "answered {}, not a feed ({expected}): another service, or a proxy, at its address?",
                String::from_utf8_lossy(kind.as_bytes()),
            );
            return Err(Failed::new(PullFailure::Unreadable, error));
        }
    }
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // An age that does not read is refused, not taken for none: the
    // answer's arrival would then date the data, fresh however old.
    let taken_ns = match response.headers().get(api::feed::AGE_HEADER) {
        None => None,
        Some(v) => {
            let age_ms = v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    let error = format!("an unreadable {} header: {v:?}", api::feed::AGE_HEADER);
                    Failed::new(PullFailure::Unreadable, error)
                })?;
            Some(answered_ns.saturating_sub(age_ms.saturating_mul(pipeline::time::MILLISECOND)))
        }
    };
    if let Some(length) = length
        && length > max_bytes
    {
        return Err(Failed::new(
            PullFailure::TooLarge,
            format!(
                "reading the answer (at most {max_bytes} bytes, --max-feed-bytes): it says it has {length}"
            ),
        ));
    }
    if let (Some(room), None) = (room, length) {
        let (body, held) = read_taking_room(response.into_body(), room, max_bytes, deadline)
            .await
            .map_err(|e| e.unwrap_or_else(late))?;
        return Ok((body, Some(held), taken_ns));
    }
    let needs = length.unwrap_or(max_bytes);
    let held = match room {
        Some(room) => Some(
            tokio::time::timeout_at(deadline, room.take(needs))
                .await
                .map_err(|_| {
                    Failed::new(PullFailure::NoRoom, format!(
                        "no room within {:.1} s to hold its {needs} bytes: the feeds held at once reached --max-feed-bytes-held {}",
                        timeout.as_secs_f64(),
                        room.max_bytes
                    ))
                })?,
        ),
        None => None,
    };
    // No more than the room taken is read, whatever the framing: a
    // `Content-Length` beside chunked framing is not what hyper reads by.
    let body = tokio::time::timeout_at(
        deadline,
        Limited::new(response.into_body(), needs).collect(),
    )
    .await
    .map_err(|_| late())?
    .map_err(|e| {
        // Without a length, what bounds the body is the option.
        let bound = if length.is_none() {
            ", --max-feed-bytes"
        } else {
            ""
        };
        let failure = match e.downcast_ref::<http_body_util::LengthLimitError>() {
            Some(_) => PullFailure::TooLarge,
            None => PullFailure::Unreachable,
        };
        Failed::new(
            failure,
            format!("reading the answer (at most {needs} bytes{bound}): {e}"),
        )
    })?
    .to_bytes();
    Ok((body, held, taken_ns))
}

/// Reads an answer without a length, at most `max_bytes`, taking room in
/// `room` for its bytes as they come, without waiting for it (see
/// [`FeedRoom`]). An error is `None` when the deadline passed.
async fn read_taking_room(
    mut body: hyper::body::Incoming,
    room: &FeedRoom,
    max_bytes: usize,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Held), Option<Failed>> {
    let mut held = room.take(0).await;
    // Kept as they came, and joined once whole: a buffer grown by doubling
    // would hold up to twice the room taken.
    let (mut chunks, mut read): (Vec<Bytes>, usize) = (Vec::new(), 0);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| None)?;
        let data = match frame {
            None => return Ok((Bytes::from(chunks.concat()), held)),
            Some(Err(e)) => {
                let error = format!("reading the answer: {e}");
                return Err(Some(Failed::new(PullFailure::Unreachable, error)));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers.
                Err(_) => continue,
            },
        };
        read += data.len();
        if read > max_bytes {
            return Err(Some(Failed::new(
                PullFailure::TooLarge,
                format!(
                    "reading the answer (at most {max_bytes} bytes, --max-feed-bytes): length limit exceeded"
                ),
            )));
        }
        room.grow(&mut held, read)?;
        chunks.push(data);
    }
}

/// Sends the request and waits for the answer's head.
async fn request(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
) -> Result<hyper::Response<hyper::body::Incoming>, Failed> {
    let request = Request::get(path);
    send_classified(agent, request, token, Empty::<Bytes>::new()).await
}

/// Sends `request` with `body` to `agent` over a connection of its own
/// (its Host header and, given one, its bearer token added): the one
/// HTTP client of the hub, `flowtap top` and `flowtap mcp-stdio`.
pub async fn send<B>(
    agent: &AgentUrl,
    request: hyper::http::request::Builder,
    token: Option<&str>,
    body: B,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_classified(agent, request, token, body)
        .await
        .map_err(|failed| failed.error)
}

/// [`send`], its failure said with why: no connection, or one that broke
/// ([`PullFailure::Unreachable`]), or an answer that is not HTTP (an agent
/// that speaks TLS, another service on its port: [`PullFailure::Unreadable`]).
async fn send_classified<B>(
    agent: &AgentUrl,
    request: hyper::http::request::Builder,
    token: Option<&str>,
    body: B,
) -> Result<hyper::Response<hyper::body::Incoming>, Failed>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let unreachable = |error: String| Failed::new(PullFailure::Unreachable, error);
    let stream = tokio::net::TcpStream::connect(&agent.authority)
        .await
        .map_err(|e| unreachable(format!("connecting: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = request.header(HOST, &agent.authority);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(body)
        .map_err(|e| unreachable(format!("building the request: {e}")))?;
    sender.send_request(request).await.map_err(|e| {
        let failure = match e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            true => PullFailure::Unreadable,
            false => PullFailure::Unreachable,
        };
        Failed::new(failure, format!("request: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls() {
        assert_eq!(
            AgentUrl::parse("http://10.0.0.1:8898").unwrap().authority,
            "10.0.0.1:8898"
        );
        assert_eq!(
            AgentUrl::parse("http://agent/").unwrap().authority,
            "agent:80"
        );
        assert_eq!(
            AgentUrl::parse("http://[2001:db8::1]:8898")
                .unwrap()
                .authority,
            "[2001:db8::1]:8898"
        );
        assert!(AgentUrl::parse("https://a:1").is_err());
        assert!(AgentUrl::parse("http://").is_err());
        assert_eq!(
            AgentUrl::parse("http://[2001:db8::1]").unwrap().authority,
            "[2001:db8::1]:80"
        );
        // Each of these was taken, the port as part of the host name
        // (`127.0.0.1:70000:80`) or the rest ignored.
        for bad in [
            "http://127.0.0.1:70000",
            "http://127.0.0.1:0",
            "http://127.0.0.1:x",
            "http://:8898",
            "http://u:p@127.0.0.1:8898",
            "http://127.0.0.1:8898?x=1",
            "http://127.0.0.1:8898/#f",
            "http://2001:db8::1:8898",
            // A path was dropped: asked at the root of what it names.
            "http://agent/x",
            "http://127.0.0.1:8898/flowtap/",
        ] {
            assert!(AgentUrl::parse(bad).is_err(), "{bad}");
        }
        // A credential is refused naming the option that gives the token
        // where the URL came from (`flowtap top --url`: --auth-token-file).
        for (parsed, option) in [
            (AgentUrl::parse("http://u@h:1"), "--agent-token-file"),
            (
                AgentUrl::parse_with("http://u@h:1", "--auth-token-file"),
                "--auth-token-file",
            ),
        ] {
            let said = parsed.unwrap_err();
            assert!(
                said.ends_with(&format!("(the token comes from {option})")),
                "{said}"
            );
        }
        // Whatever else is wrong with it, a URL with a password is refused
        // for its credentials, and never shown with them.
        for url in [
            "http://u:s3cret@h:1/x?q",
            "https://u:s3cret@h:1",
            "http://u:s3/cr@et@h:1",
            "u:s3cret@h:1",
        ] {
            let said = AgentUrl::parse(url).unwrap_err();
            assert!(!said.contains("s3") && !said.contains("et@"), "{said}");
            assert!(said.contains("no credentials"), "{said}");
        }
        assert_eq!(without_credentials("http://h:1"), "http://h:1");
        // With a path: the same checks of what comes before it, and none
        // of a query or fragment after it.
        let with_path = |url| AgentUrl::parse_with_path(url, "--auth-token-file");
        let parsed = with_path("http://h/flowtap/").unwrap();
        assert_eq!(
            (parsed.0.authority.as_str(), parsed.1),
            ("h:80", "/flowtap")
        );
        for bad in [
            "http://h:1/?x",
            "http://h:1/p#f",
            "http://h:0/p",
            "https://h:1/p",
            "http://h/u:s3cret@x",
        ] {
            let said = with_path(bad).unwrap_err();
            assert!(!said.contains("s3"), "{said}");
        }
        assert_eq!(without_credentials("http://u:p@h:1"), "http://…@h:1");
    }

    /// An agent on a local port that answers every request with `head`
    /// and then `body` (HTTP/1.1 as written), once per connection.
    async fn agent_answering(head: String, body: Vec<u8>) -> AgentUrl {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (head, body) = (head.clone(), body.clone());
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = conn.read(&mut request).await;
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                });
            }
        });
        AgentUrl { authority }
    }

    /// An agent answering with `body` and its length.
    async fn agent_answering_with_length(body: &[u8]) -> AgentUrl {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        agent_answering(head, body.to_vec()).await
    }

    /// Why a pull failed, as `flowtap_hub_pulls_failed_total` counts it:
    /// an answer that is not HTTP (a TLS alert from an agent that speaks
    /// TLS) is unreadable, not unreachable; a port nobody listens on is
    /// unreachable.
    #[tokio::test]
    async fn a_pull_that_fails_says_why() {
        let room = FeedRoom::new(1 << 20, Arc::default());
        let timeout = Duration::from_secs(5);
        let tls_alert = agent_answering(String::new(), vec![0x15, 3, 1, 0, 2, 2, 0x28]).await;
        let failed = get_held(&tls_alert, "/f", None, timeout, 1 << 20, &room)
            .await
            .err()
            .unwrap();
        assert_eq!(failed.failure, PullFailure::Unreadable, "{}", failed.error);
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let authority = listener.local_addr().unwrap().to_string();
            drop(listener);
            AgentUrl { authority }
        };
        let failed = get_held(&closed, "/f", None, timeout, 1 << 20, &room)
            .await
            .err()
            .unwrap();
        assert_eq!(failed.failure, PullFailure::Unreachable, "{}", failed.error);
    }

    /// The feed bound (`--max-feed-bytes`) holds whether the answer says
    /// its length up front or sends it in chunks; within it the body comes
    /// back whole and exact.
    #[tokio::test]
    async fn bodies_are_read_whole_within_the_bound_and_refused_beyond_it() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sized = agent_answering_with_length(&body).await;
        // Chunked: 100 chunks of 3000 bytes, no length up front.
        let chunked = agent_answering(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".into(),
            chunks_of(&body),
        )
        .await;
        let timeout = Duration::from_secs(10);
        for agent in [&sized, &chunked] {
            let got = get(agent, "/internal/v1/feed", None, timeout, body.len())
                .await
                .unwrap();
            assert!(got == body, "{agent:?}: {} bytes back", got.len());
            let refused = get(agent, "/internal/v1/feed", None, timeout, body.len() - 1)
                .await
                .unwrap_err();
            assert!(
                refused.contains(&format!(
                    "at most {} bytes, --max-feed-bytes",
                    body.len() - 1
                )),
                "{agent:?}: {refused}"
            );
        }
        // An agent that refuses (a wrong token, say) is an error naming its
        // status and what it said, not a feed; whatever length it says, and
        // without taking room.
        let no_room = FeedRoom::new(1024, Arc::default());
        let _full = no_room.take(1024).await;
        for (status, length, text) in [
            ("401 Unauthorized", 13, &b"bad token\r\n\r\n"[..]),
            (
                "503 Service Unavailable",
                300_000_000,
                &b"shutting down"[..],
            ),
        ] {
            let refusing = agent_answering(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                ),
                text.to_vec(),
            )
            .await;
            let Failed { failure, error } =
                get_held(&refusing, "/f", None, timeout, 1 << 20, &no_room)
                    .await
                    .err()
                    .unwrap();
            assert_eq!(failure, PullFailure::Refused);
            let said = String::from_utf8_lossy(&text[..9]);
            assert!(
                error.starts_with(&format!("HTTP {status}: {said}")),
                "{error}"
            );
        }
        // A length beside chunked framing (which hyper reads by) does not
        // take less room than the body it reads: reading stops at the room.
        let lying = agent_answering(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nConnection: close\r\n\r\n".into(),
            chunks_of(&body),
        )
        .await;
        let room = FeedRoom::new(1 << 30, Arc::default());
        let Failed { failure, error } = get_held(&lying, "/f", None, timeout, 1 << 20, &room)
            .await
            .err()
            .unwrap();
        assert!(error.contains("at most 10 bytes"), "{error}");
        assert_eq!(failure, PullFailure::TooLarge);
        // An age that does not read (past u64) is refused; it was taken for
        // none, and the data dated by its arrival: fresh however old.
        for (age, dates) in [
            ("1500", true),
            ("99999999999999999999", false),
            ("-1", false),
        ] {
            let aged = agent_answering(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n{}: {age}\r\nConnection: close\r\n\r\n",
                    api::feed::AGE_HEADER
                ),
                b"hello".to_vec(),
            )
            .await;
            let pulled = get_held(&aged, "/f", None, timeout, 1 << 20, &room).await;
            match pulled {
                Ok(p) => {
                    assert!(dates, "{age}");
                    let age_ns = pipeline::time::wall_now_ns() - p.taken_ns.unwrap();
                    assert!(
                        (1_500_000_000..60_000_000_000).contains(&age_ns),
                        "{age_ns}"
                    );
                }
                Err(Failed { failure, error }) => {
                    assert!(!dates, "{age}: {error}");
                    assert!(
                        error.contains("unreadable flowtap-snapshot-age-ms"),
                        "{error}"
                    );
                    assert_eq!(failure, PullFailure::Unreadable);
                }
            }
        }
        // A 200 of another type is named so (it was decoded: "Found an
        // Option discriminant that wasn't 0 or 1"); the feed's type, with
        // parameters or in capitals, is read.
        for (kind, read) in [
            ("text/html; charset=utf-8", false),
            ("application/json", false),
            ("Application/X-Flowtap-Feed; v=5", true),
        ] {
            let typed = agent_answering(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                ),
                b"hello".to_vec(),
            )
            .await;
            match get_held(&typed, "/f", None, timeout, 1 << 20, &room).await {
                Ok(_) => assert!(read, "{kind}"),
                Err(Failed { failure, error }) => {
                    assert!(!read, "{kind}: {error}");
                    assert!(
                        error.starts_with(&format!("answered {kind}, not a feed")),
                        "{error}"
                    );
                    assert_eq!(failure, PullFailure::Unreadable);
                }
            }
        }
    }

    /// `body` in chunked framing, 3000 bytes a chunk.
    fn chunks_of(body: &[u8]) -> Vec<u8> {
        let mut chunks = Vec::new();
        for piece in body.chunks(3000) {
            chunks.extend(format!("{:x}\r\n", piece.len()).bytes());
            chunks.extend(piece);
            chunks.extend(b"\r\n");
        }
        chunks.extend(b"0\r\n\r\n");
        chunks
    }

    /// Feeds held at once stay within the room (`--max-feed-bytes-held`):
    /// a pull whose body does not fit waits, counted, until a held feed is
    /// let go, and fails naming the bound if none is within its timeout.
    /// An answer without a length takes room as its bytes come, and fails
    /// at once where there is none.
    #[tokio::test]
    async fn feeds_held_at_once_stay_within_the_room() {
        let body = vec![7u8; 600 * 1024];
        let sized = agent_answering_with_length(&body).await;
        let waits = Arc::new(AtomicU64::new(0));
        let room = FeedRoom::new(1024 * 1024, waits.clone());
        let max = 1 << 20;
        let pull =
            |timeout: u64| get_held(&sized, "/f", None, Duration::from_secs(timeout), max, &room);
        let first = pull(10).await.unwrap();
        assert_eq!(first.body.len(), body.len());
        assert_eq!(waits.load(Ordering::Relaxed), 0);
        // 600 KiB held of 1 MiB: another 600 cannot be held beside it.
        let refused = pull(1).await.err().unwrap();
        assert_eq!(
            refused,
            Failed::new(
                PullFailure::NoRoom,
                "no room within 1.0 s to hold its 614400 bytes: the feeds held at once reached --max-feed-bytes-held 1048576".into()
            )
        );
        assert_eq!(waits.load(Ordering::Relaxed), 1);
        // Without a length an answer takes room for what it brings: 424
        // KiB are left, so 3 bytes are read whatever their bound, and 500
        // KiB fail at once, naming the room.
        let no_length = |body: Vec<u8>| {
            agent_answering("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(), body)
        };
        let one_second = Duration::from_secs(1);
        let small = get_held(
            &no_length(b"abc".to_vec()).await,
            "/f",
            None,
            one_second,
            max,
            &room,
        )
        .await
        .unwrap();
        assert_eq!(&small.body[..], b"abc");
        drop(small);
        let large = no_length(vec![1u8; 500 * 1024]).await;
        let Failed {
            failure,
            error: refused,
        } = get_held(&large, "/f", None, Duration::from_secs(10), max, &room)
            .await
            .err()
            .unwrap();
        assert_eq!(failure, PullFailure::NoRoom);
        assert!(
            refused.starts_with("no room to hold more than")
                && refused.ends_with("of an answer without a length: the feeds held at once reached --max-feed-bytes-held 1048576"),
            "{refused}"
        );
        // It failed at once: no wait.
        assert_eq!(waits.load(Ordering::Relaxed), 1);
        // Let go once the next waits: it then goes through whole.
        let (second, ()) = tokio::join!(pull(10), async {
            for _ in 0..500 {
                if waits.load(Ordering::Relaxed) == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(first);
        });
        assert_eq!(second.unwrap().body, body);
        assert_eq!(waits.load(Ordering::Relaxed), 2);
    }

    /// An answer without a length that trickles in holds only the room its
    /// bytes take: a feed beside it that fits in the rest is read at once
    /// (it waited for the trickle's timeout: the room was taken for a whole
    /// `--max-feed-bytes`, by default all of it).
    #[tokio::test]
    async fn a_trickling_answer_without_a_length_holds_no_one_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let trickling = AgentUrl {
            authority: listener.local_addr().unwrap().to_string(),
        };
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = conn.read(&mut [0u8; 1024]).await;
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            let _ = conn.write_all(head.as_bytes()).await;
            // A byte a chunk, every 50 ms, for 3 s.
            for _ in 0..60 {
                if conn.write_all(b"1\r\nx\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        });
        let max = 1 << 20;
        let room = FeedRoom::new(max, Arc::default());
        let body = vec![7u8; 600 * 1024];
        let sized = agent_answering_with_length(&body).await;
        let (trickled, sized) = tokio::join!(
            get_held(&trickling, "/f", None, Duration::from_secs(10), max, &room),
            async {
                // Once the trickle has begun.
                tokio::time::sleep(Duration::from_millis(300)).await;
                get_held(&sized, "/f", None, Duration::from_secs(1), max, &room).await
            }
        );
        assert_eq!(sized.map(|p| p.body.len()), Ok(body.len()));
        assert_eq!(trickled.map(|p| p.body.len()), Ok(60));
    }
}
