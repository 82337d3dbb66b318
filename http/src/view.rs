//! A published snapshot prepared for queries: built once per snapshot by the
//! publisher thread, then read by any number of requests without locks.

use std::sync::Arc;

use pipeline::Snapshot;

use crate::api::summary::{self, EndpointName};

pub struct View {
    pub snapshot: Arc<Snapshot>,
    /// The summary body, serialised once.
    summary_json: Vec<u8>,
}

impl View {
    pub fn build(snapshot: Arc<Snapshot>) -> View {
        let mut view = View {
            snapshot,
            summary_json: Vec::new(),
        };
        let summary = summary::build(&view);
        view.summary_json = serde_json::to_vec(&summary).expect("summary serialises");
        view
    }

    pub fn summary_json(&self) -> &[u8] {
        &self.summary_json
    }

    /// Names of flow `i`'s client and server for the summary's top lists.
    pub fn endpoint_names(&self, i: usize) -> (EndpointName, EndpointName) {
        let key = &self.snapshot.flows[i].key;
        (
            EndpointName::Ip(key.client.to_ip()),
            EndpointName::Ip(key.server.to_ip()),
        )
    }
}
