//! Which agents the hub pulls, found anew every interval: URLs given with
//! `--agent`, every address a DNS name resolves to (`--agents-dns`, e.g. a
//! headless Service), and the ready endpoints of the agents' Service as the
//! Kubernetes names see them (`--agents-service`), so agents that come and
//! go are followed without a restart.

use std::net::SocketAddr;

use k8s::Inventory;

use crate::client::AgentUrl;

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
        port: u16,
    },
}

impl AgentSource {
    /// `NAME:PORT` for `--agents-dns`.
    pub fn dns(text: &str) -> Result<AgentSource, String> {
        let (name, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected NAME:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port"))?;
        Ok(AgentSource::Dns {
            name: name.to_owned(),
            port,
        })
    }

    /// `NAMESPACE/NAME[:PORT]` for `--agents-service` (port 8898 by default).
    pub fn service(text: &str) -> Result<AgentSource, String> {
        let (service, port) = match text.rsplit_once(':') {
            Some((s, p)) => (
                s,
                p.parse()
                    .map_err(|_| format!("{text:?}: {p:?} is not a port"))?,
            ),
            None => (text, 8898),
        };
        let (namespace, name) = service
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected NAMESPACE/NAME[:PORT]"))?;
        Ok(AgentSource::Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub sources: Vec<AgentSource>,
}

impl Discovery {
    /// The agents every source names now, each once, in a stable order.
    /// A DNS name that does not resolve names none (and is logged).
    pub async fn agents(&self, inventory: Option<&Inventory>) -> Vec<AgentUrl> {
        let mut found = Vec::new();
        for source in &self.sources {
            match source {
                AgentSource::Url(url) => found.push(url.clone()),
                AgentSource::Dns { name, port } => {
                    match tokio::net::lookup_host((name.as_str(), *port)).await {
                        Ok(addrs) => found.extend(addrs.map(authority)),
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "agents' DNS name does not resolve")
                        }
                    }
                }
                AgentSource::Service {
                    namespace,
                    name,
                    port,
                } => {
                    if let Some(inv) = inventory {
                        found.extend(
                            inv.endpoints_of(namespace, name)
                                .iter()
                                .map(|ip| authority(SocketAddr::new(*ip, *port))),
                        );
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
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
                port: 8898
            }
        );
        assert!(AgentSource::service("flowtap").is_err());
        assert!(AgentSource::dns("agents.local").is_err());
        assert_eq!(
            AgentSource::dns("agents.local:9000").unwrap(),
            AgentSource::Dns {
                name: "agents.local".into(),
                port: 9000
            }
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_source_each_agent_once() {
        let d = Discovery {
            sources: vec![
                AgentSource::Url(AgentUrl::parse("http://127.0.0.1:9").unwrap()),
                AgentSource::dns("localhost:9").unwrap(),
            ],
        };
        let agents = d.agents(None).await;
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
    }
}
