//! The one HTTP request a pull makes: `GET <agent>/internal/v1/feed` over
//! plain HTTP/1.1, one connection per pull (one pull per agent per
//! interval: nothing to gain from pooling), bounded in time and size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;

/// An agent's address as the hub reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentUrl {
    /// `host:port`, as given or discovered.
    pub authority: String,
}

impl AgentUrl {
    /// Parses `http://host:port` (a path is ignored; https is not spoken:
    /// agents are reached inside the cluster, with a bearer token).
    pub fn parse(text: &str) -> Result<AgentUrl, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text:?}: an agent URL starts with http://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(AgentUrl { authority })
    }

    pub fn name(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// GETs `path` from `agent`, within `timeout`, at most `max_bytes` of body.
pub async fn get(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    match tokio::time::timeout(timeout, fetch(agent, path, token, max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:.1} s", timeout.as_secs_f64())),
    }
}

async fn fetch(
    agent: &AgentUrl,
    path: &str,
    token: Option<&str>,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect(&agent.authority)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get(path).header(HOST, &agent.authority);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| format!("reading the answer (at most {max_bytes} bytes): {e}"))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {text}"));
    }
    Ok(body)
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
            AgentUrl::parse("http://agent/x").unwrap().authority,
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

    /// The feed bound (`--max-feed-bytes`) holds whether the answer says
    /// its length up front or sends it in chunks; within it the body comes
    /// back whole and exact.
    #[tokio::test]
    async fn bodies_are_read_whole_within_the_bound_and_refused_beyond_it() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sized = agent_answering(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            body.clone(),
        )
        .await;
        // Chunked: 100 chunks of 3000 bytes, no length up front.
        let mut chunks = Vec::new();
        for piece in body.chunks(3000) {
            chunks.extend(format!("{:x}\r\n", piece.len()).bytes());
            chunks.extend(piece);
            chunks.extend(b"\r\n");
        }
        chunks.extend(b"0\r\n\r\n");
        let chunked = agent_answering(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".into(),
            chunks,
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
                refused.contains(&format!("at most {} bytes", body.len() - 1)),
                "{agent:?}: {refused}"
            );
        }
        // An agent that refuses (a wrong token, say) is an error naming
        // its status and what it said, not a feed.
        let refusing = agent_answering(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\n".into(),
            b"bad token\r\n\r\n".to_vec(),
        )
        .await;
        let error = get(&refusing, "/internal/v1/feed", None, timeout, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            error.starts_with("HTTP 401 Unauthorized: bad token"),
            "{error}"
        );
    }
}
