//! `flowtap mcp-stdio --url URL`: MCP over stdio for clients that only
//! launch local processes. Each line on stdin is one JSON-RPC message; it is
//! forwarded to the running flowtap's `/mcp` with the headers the
//! Streamable HTTP transport wants (session and revision after an
//! `initialize`; revision, method and name for stateless requests), and
//! every answer is written to stdout as one line, in the order answers
//! come: a few requests are forwarded at once, so that a slow answer (a
//! hub's round) holds no ping or call behind it. Diagnostics go to stderr.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use api::mcp::{headers, jsonrpc, stateless};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long one answer may take: a hub's may wait for a round of pulls,
/// and a server writes out any answer within its `--http-response-timeout`
/// (60 s by default).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest answer taken: far above a server's `--mcp-max-reply-bytes`
/// (8 MiB by default).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Requests forwarded at once; the next line is read when one is answered.
const AT_ONCE: u32 = 8;
/// How long answers still on their way are waited for once the client has
/// closed stdin (which the stdio transport makes the way to end a server):
/// a bridge given one request and end of input still answers it.
const AFTER_INPUT_ENDS: std::time::Duration = std::time::Duration::from_secs(10);

/// How long writing out the answers come and ending the session (DELETE)
/// may each take once input has ended and answers are no longer waited for.
const ENDING_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Where and how to reach the running flowtap, and the session it gave.
struct Forwarder {
    agent: hub::client::AgentUrl,
    path: String,
    token: Option<String>,
    session: RefCell<Session>,
    /// Held while a new session is begun, so that requests the server
    /// answered 404 at once begin one, not one each.
    beginning: tokio::sync::Mutex<()>,
}

/// The session flowtap gave, as `initialize` left it.
#[derive(Clone, Default)]
struct Session {
    id: Option<String>,
    /// The revision `initialize` negotiated.
    version: Option<String>,
    /// The client's `initialize` params, to begin a new session with when
    /// the server ends this one.
    initialize: Option<Value>,
    /// Sessions begun so far: a request answered 404 begins a new one only
    /// if none has been begun since it was sent.
    begun: u64,
}

/// An HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    session: Option<String>,
    body: Bytes,
}

pub(crate) fn run(url: &str, token_file: Option<&Path>) -> i32 {
    let token = match token_file
        .map(|path| crate::cli::read_token("--auth-token-file", path))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("flowtap mcp-stdio: {e:#}");
            return 2;
        }
    };
    // The base URL of flowtap, or its /mcp endpoint itself.
    let (agent, base) = match crate::cli::flowtap_url(url) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("flowtap mcp-stdio: {e}");
            return 2;
        }
    };
    let path = format!("{base}{}", api::mcp::PATH);
    let forwarder = Rc::new(Forwarder {
        agent,
        path,
        token,
        session: RefCell::default(),
        beginning: tokio::sync::Mutex::new(()),
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flowtap mcp-stdio: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        match forwarder.pump().await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("flowtap mcp-stdio: {e}");
                1
            }
        }
    })
}

impl Forwarder {
    /// Forwards until stdin ends and the answers on their way are written
    /// (for [`AFTER_INPUT_ENDS`] at most), then ends the session.
    async fn pump(self: &Rc<Self>) -> std::io::Result<()> {
        let mut stdin = BufReader::new(tokio::io::stdin());
        // Answers to write, in the order they come; None: the end (answers
        // still on their way then are not waited for).
        let (answers, mut to_write) = tokio::sync::mpsc::unbounded_channel::<Option<Value>>();
        let writer = tokio::task::spawn_local(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(Some(message)) = to_write.recv().await {
                // serde_json writes no raw newlines: one message, one line.
                let mut text = message.to_string();
                text.push('\n');
                stdout.write_all(text.as_bytes()).await?;
                stdout.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        });
        let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE as usize));
        let mut line = Vec::new();
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line).await? == 0 {
                break;
            }
            // A line that is not UTF-8 (which the stdio transport requires)
            // is a parse error, answered, and the bridge reads on.
            let text = match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => text.trim_end_matches(['\n', '\r']).to_owned(),
                Err(e) => {
                    let error = parse_error(format!("the line is not UTF-8: {e}"));
                    let _ = answers.send(Some(error));
                    continue;
                }
            };
            // An `initialize` goes alone: what follows it needs its session.
            // (A line that only names it goes alone too: no harm.)
            let turns_taken = if text.contains("\"initialize\"") {
                AT_ONCE
            } else {
                1
            };
            let Ok(turn) = turns.clone().acquire_many_owned(turns_taken).await else {
                break;
            };
            let (forwarder, answers) = (self.clone(), answers.clone());
            tokio::task::spawn_local(async move {
                for message in forwarder.forward(&text).await {
                    let _ = answers.send(Some(message));
                }
                drop(turn);
            });
        }
        // Every turn back: every answer on its way has been sent to the
        // writer (or the wait is over).
        let all = turns.acquire_many(AT_ONCE);
        if tokio::time::timeout(AFTER_INPUT_ENDS, all).await.is_err() {
            eprintln!(
                "flowtap mcp-stdio: input ended; answers that have not come within {} s are not waited for",
                AFTER_INPUT_ENDS.as_secs()
            );
        }
        let _ = answers.send(None);
        let written = tokio::time::timeout(ENDING_WITHIN, writer).await;
        let id = self.session.borrow_mut().id.take();
        if let Some(session) = id {
            // A courtesy to the server: not waited for as an answer is (a
            // hung server held the exit a minute more).
            let session = [(headers::SESSION_ID, session)];
            let delete = self.send("DELETE", Vec::new(), &session);
            let _ = tokio::time::timeout(ENDING_WITHIN, delete).await;
        }
        match written {
            Ok(Ok(result)) => result,
            // Stdout not read, or the writer gone: nothing more can be said.
            _ => Ok(()),
        }
    }

    /// One message (or batch) from the client; what to answer it with: a
    /// batch's answers as one array, a notification's nothing (JSON-RPC:
    /// a notification is never answered; what went wrong goes to stderr).
    async fn forward(&self, line: &str) -> Vec<Value> {
        let message: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return vec![parse_error(format!("Parse error: {e}"))],
        };
        // An id the server cannot echo (1.5) is answered with null, as the
        // server does: not given back as if it had been taken.
        let id = message
            .get("id")
            .filter(|id| jsonrpc::echoable_id(id))
            .cloned();
        let notification = message.is_object() && message.get("id").is_none();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let fail = |text: String| -> Vec<Value> {
            eprintln!("flowtap mcp-stdio: {text}");
            // A request is answered (with a null id where its own cannot
            // be echoed); a notification never.
            if notification {
                return Vec::new();
            }
            let id = id.clone().unwrap_or(Value::Null);
            vec![jsonrpc::error(
                &id,
                &jsonrpc::RpcError::new(jsonrpc::INTERNAL_ERROR, text),
            )]
        };
        let sent_with = self.session.borrow().clone();
        let mut answer = match self.post(&message, line, &sent_with).await {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        // The server ended the session (it restarted, the session idled
        // out or gave way to newer ones): the transport says a client then
        // starts a new one, which a stdio client cannot know to do. The
        // bridge does, with the client's own `initialize`, and sends the
        // message again, once.
        if answer.status == 404 && sent_with.id.is_some() && method != "initialize" {
            let began = self.begin_again(sent_with.begun).await;
            let now = self.session.borrow().clone();
            answer = match began {
                Ok(()) => match self.post(&message, line, &now).await {
                    Ok(a) => a,
                    Err(e) => return fail(e),
                },
                Err(e) => return fail(format!("starting a new session: {e}")),
            };
        }
        let (mut messages, answered_as_batch) = match messages_of(&answer) {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        if notification {
            for m in &messages {
                eprintln!("flowtap mcp-stdio: answer to a notification, not passed on: {m}");
            }
            return Vec::new();
        }
        // A transport refusal carries no id; the client waits for its own.
        if let (Some(id), [only]) = (&id, messages.as_mut_slice())
            && only.get("error").is_some()
            && only.get("id").is_none_or(Value::is_null)
        {
            only["id"] = id.clone();
        }
        if method == "initialize" && answer.status == 200 {
            let replaced = {
                let mut session = self.session.borrow_mut();
                session.initialize = message.get("params").cloned();
                let replaced = std::mem::replace(&mut session.id, answer.session);
                session.version = messages
                    .first()
                    .and_then(|m| m["result"]["protocolVersion"].as_str())
                    .map(str::to_owned);
                session.begun += 1;
                replaced.filter(|old| session.id.as_ref() != Some(old))
            };
            // The client's earlier session ended, as at exit: left open, it
            // held a slot of the server's (and of the client's share) for
            // the idle timeout.
            if let Some(old) = replaced {
                let session = [(headers::SESSION_ID, old)];
                let delete = self.send("DELETE", Vec::new(), &session);
                let _ = tokio::time::timeout(ENDING_WITHIN, delete).await;
            }
        }
        // A batch's answers as one array; a batch refused whole (empty, or
        // one message per request) as the one error object the server sent
        // (JSON-RPC 2.0, 6: "a single Response object").
        if message.is_array() && answered_as_batch && !messages.is_empty() {
            return vec![Value::Array(messages)];
        }
        messages
    }

    /// POSTs one message (`line`, as the client wrote it) with the headers
    /// the transport wants for it in `session`.
    async fn post(&self, message: &Value, line: &str, session: &Session) -> Result<Answer, String> {
        let method = message.get("method").and_then(Value::as_str);
        let params = message.get("params").and_then(Value::as_object);
        let mut extra = Vec::new();
        match params.and_then(stateless::requested_version) {
            // Stateless: the headers mirror the body.
            Some(version) => {
                extra.push((headers::PROTOCOL_VERSION, version.to_owned()));
                extra.push((headers::METHOD, method.unwrap_or_default().to_owned()));
                if let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) {
                    extra.push((headers::NAME, headers::encode(name)));
                }
            }
            None if method == Some("initialize") => {}
            None => {
                if let Some(s) = &session.id {
                    extra.push((headers::SESSION_ID, s.clone()));
                }
                if let Some(v) = &session.version {
                    extra.push((headers::PROTOCOL_VERSION, v.clone()));
                }
            }
        }
        self.send("POST", line.as_bytes().to_vec(), &extra)
            .await
            .map_err(|e| {
                format!(
                    "cannot reach flowtap at http://{}{}: {e}",
                    self.agent.authority, self.path
                )
            })
    }

    /// A new session in place of the one the server ended, unless one has
    /// been begun since session `ended` (another request met the 404 first).
    async fn begin_again(&self, ended: u64) -> Result<(), String> {
        let _alone = self.beginning.lock().await;
        if self.session.borrow().begun != ended {
            return Ok(());
        }
        eprintln!("flowtap mcp-stdio: the server ended the session; starting a new one");
        self.initialize_again().await
    }

    /// A new session, begun as the client began its first: its
    /// `initialize`, then `notifications/initialized`.
    async fn initialize_again(&self) -> Result<(), String> {
        let old = self.session.borrow().clone();
        let params = old
            .initialize
            .clone()
            .ok_or("the client's initialize is not known")?;
        let initialize = serde_json::json!({
            "jsonrpc": "2.0",
            "id": "flowtap-mcp-stdio-initialize",
            "method": "initialize",
            "params": params,
        });
        let answer = self
            .post(&initialize, &initialize.to_string(), &Session::default())
            .await?;
        let (messages, _) = messages_of(&answer)?;
        let version = messages
            .first()
            .and_then(|m| m["result"]["protocolVersion"].as_str());
        let (200, Some(version)) = (answer.status, version) else {
            return Err(format!(
                "flowtap answered HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        };
        if old.version.as_deref() != Some(version) {
            eprintln!(
                "flowtap mcp-stdio: the new session speaks {version}, where the client's spoke {}",
                old.version.as_deref().unwrap_or("?")
            );
        }
        let new = Session {
            id: answer.session,
            version: Some(version.to_owned()),
            initialize: old.initialize,
            begun: old.begun + 1,
        };
        let initialized =
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(&initialized, &initialized.to_string(), &new)
            .await?;
        *self.session.borrow_mut() = new;
        Ok(())
    }

    /// One request, answered within [`ANSWER_WITHIN`] and in at most
    /// [`MAX_ANSWER_BYTES`]: a server that stalls or sends without end
    /// gets an error, not a bridge that waits or grows forever.
    async fn send(
        &self,
        method: &str,
        body: Vec<u8>,
        extra: &[(&str, String)],
    ) -> Result<Answer, String> {
        tokio::time::timeout(ANSWER_WITHIN, self.exchange(method, body, extra))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no whole answer within {} s",
                    ANSWER_WITHIN.as_secs()
                ))
            })
    }

    async fn exchange(
        &self,
        method: &str,
        body: Vec<u8>,
        extra: &[(&str, String)],
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(&self.path)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let body = Full::new(Bytes::from(body));
        let response = hub::client::send(&self.agent, request, self.token.as_deref(), body).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
        let session = header(headers::SESSION_ID);
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => format!("an answer larger than {MAX_ANSWER_BYTES} bytes"),
                Err(e) => e.to_string(),
            })?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            session,
            body,
        })
    }
}

/// The JSON-RPC messages an answer carries (none for 202), and whether
/// they came as a batch's array (an event stream's events answer a batch
/// one by one).
fn messages_of(answer: &Answer) -> Result<(Vec<Value>, bool), String> {
    if answer.content_type.starts_with("text/event-stream") {
        return Ok((event_stream_messages(&answer.body), true));
    }
    if answer.body.is_empty() {
        return Ok((Vec::new(), false));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Array(batch)) => Ok((batch, true)),
        Ok(v) if v.get("jsonrpc").is_some() => Ok((vec![v], false)),
        _ => Err(format!(
            "flowtap answered HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )),
    }
}

/// JSON-RPC's answer to what cannot be parsed (its id unknown: null).
fn parse_error(text: String) -> Value {
    jsonrpc::error(
        &Value::Null,
        &jsonrpc::RpcError::new(jsonrpc::PARSE_ERROR, text),
    )
}

/// The JSON-RPC messages of an event stream's `message` events.
fn event_stream_messages(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}
