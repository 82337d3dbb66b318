//! One agent reached at two addresses is pulled and merged once. A
//! dual-stack headless Service's name resolves to each pod's IPv4 and IPv6
//! address, and `--agent` may name an agent that discovery finds too; each
//! feed names its agent's instance ([`api::feed::FeedHead::instance`],
//! drawn when the agent starts), which tells them apart where the names and
//! addresses cannot: two agents may share a node name (two mirror ports on
//! one host).
//!
//! Within a round the first feed of an instance to arrive is merged and the
//! others are let go before they are decoded or take a share of the flow
//! bound ([`Claims`]). Between rounds the hub remembers which address gave
//! which instance ([`Instances`]), so that from the second round on only
//! the first of them, in the agents' stable order, is pulled at all: the
//! coverage names the same address every round. An address whose pull
//! fails is forgotten, so the next round tries every address again; its
//! instance is still remembered ([`Instances::known`]), so that an agent
//! is named missing once however many of its addresses failed, and not at
//! all when another of them answered.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::client::AgentUrl;

/// Which instance each address gave at its last successful pull.
#[derive(Debug, Default)]
pub struct Instances {
    by_address: HashMap<String, u64>,
    /// The instance each address last gave, kept through failed pulls
    /// while the address is discovered.
    last_known: HashMap<String, u64>,
}

impl Instances {
    /// `agents` (in their stable order) without those known to be an
    /// earlier one's instance.
    pub fn pull_once(&self, mut agents: Vec<AgentUrl>) -> Vec<AgentUrl> {
        let mut seen = std::collections::HashSet::new();
        agents.retain(|a| match self.by_address.get(&a.name()) {
            Some(instance) => seen.insert(*instance),
            None => true,
        });
        agents
    }

    /// Takes in a round's pulls: each address's instance, or `None` for one
    /// whose pull failed. Addresses not pulled this round are kept while
    /// `discovered` still names them (they were left out as duplicates).
    pub fn learn(&mut self, pulled: &[(String, Option<u64>)], discovered: &[AgentUrl]) {
        let discovered: std::collections::HashSet<String> =
            discovered.iter().map(AgentUrl::name).collect();
        self.by_address.retain(|a, _| discovered.contains(a));
        self.last_known.retain(|a, _| discovered.contains(a));
        for (address, instance) in pulled {
            match instance {
                Some(i) => {
                    self.by_address.insert(address.clone(), *i);
                    self.last_known.insert(address.clone(), *i);
                }
                None => {
                    self.by_address.remove(address);
                }
            };
        }
    }

    /// The instance `address` last gave, if it ever answered.
    pub fn known(&self, address: &str) -> Option<u64> {
        self.last_known.get(address).copied()
    }
}

/// The instances whose feeds a round has taken, and at which address.
#[derive(Debug, Default)]
pub struct Claims(Mutex<HashMap<u64, String>>);

impl Claims {
    /// Claims `instance` for `address`; the address that has it, if
    /// another does.
    pub fn claim(&self, instance: u64, address: &str) -> Result<(), String> {
        let mut claims = self.0.lock().expect("claims lock");
        match claims.get(&instance) {
            Some(first) if first != address => Err(first.clone()),
            _ => {
                claims.insert(instance, address.to_owned());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(names: &[&str]) -> Vec<AgentUrl> {
        names
            .iter()
            .map(|n| AgentUrl::parse(&format!("http://{n}")).unwrap())
            .collect()
    }

    fn names(agents: &[AgentUrl]) -> Vec<String> {
        agents.iter().map(AgentUrl::name).collect()
    }

    #[test]
    fn an_agent_at_two_addresses_is_pulled_at_the_first_after_one_round() {
        let both = urls(&["198.18.0.1:8898", "[2001:db8::1]:8898", "198.18.0.2:8898"]);
        let mut instances = Instances::default();
        assert_eq!(names(&instances.pull_once(both.clone())), names(&both));
        // Round one: the IPv6 address's feed arrived first.
        let claims = Claims::default();
        assert_eq!(claims.claim(7, "http://[2001:db8::1]:8898"), Ok(()));
        assert_eq!(
            claims.claim(7, "http://198.18.0.1:8898"),
            Err("http://[2001:db8::1]:8898".to_owned())
        );
        assert_eq!(claims.claim(8, "http://198.18.0.2:8898"), Ok(()));
        instances.learn(
            &[
                ("http://198.18.0.1:8898".into(), Some(7)),
                ("http://[2001:db8::1]:8898".into(), Some(7)),
                ("http://198.18.0.2:8898".into(), Some(8)),
            ],
            &both,
        );
        // From then on, the first in order only.
        assert_eq!(
            names(&instances.pull_once(both.clone())),
            ["http://198.18.0.1:8898", "http://198.18.0.2:8898"]
        );
        // Its pull fails: every address is tried again.
        instances.learn(&[("http://198.18.0.1:8898".into(), None)], &both);
        assert_eq!(names(&instances.pull_once(both.clone())), names(&both));
        // An address no longer discovered is forgotten.
        instances.learn(&[], &both[2..]);
        assert!(instances.by_address.len() == 1, "{instances:?}");
    }
}
