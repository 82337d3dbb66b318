//! The Kubernetes API objects flowtap reads, as `kubectl get
//! pods,services,endpointslices,nodes -A -o json` prints them: a `v1` `List`
//! of Pod, Service, EndpointSlice (discovery.k8s.io/v1) and Node objects.
//! Field names and nesting follow the API; only the fields flowtap uses are
//! declared, and everything else is ignored.
//!
//! A list the API sends as `null` reads as empty: Go's encoder writes a nil
//! slice without `omitempty` as `null` (an EndpointSlice of a Service with
//! no pods has `"endpoints": null`), and one such object must not fail a
//! whole list page.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Reads `null` as the type's empty value (see the module's comment).
fn null_as_empty<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The labels flowtap reads: an EndpointSlice's service and a pod's
/// template hash. The rest (often dozens a pod or node) are not kept, so a
/// watch's memory grows with the objects, not with how they are labelled.
const USED_LABELS: [&str; 2] = [SERVICE_NAME_LABEL, POD_TEMPLATE_HASH_LABEL];

fn used_labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let mut labels: BTreeMap<String, String> = null_as_empty(d)?;
    labels.retain(|k, _| USED_LABELS.contains(&k.as_str()));
    Ok(labels)
}

/// `kind: List` (or any `*List`): heterogeneous items, each with its kind.
#[derive(Deserialize, Debug, Default)]
pub struct List {
    #[serde(default)]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub items: Vec<Item>,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "kind")]
pub enum Item {
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Node(Node),
    /// Any other kind is ignored.
    #[serde(other)]
    Other,
}

/// Equal whatever their `resource_version`, which every update changes:
/// what flowtap keeps of an object is the same or not.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only [`USED_LABELS`].
    #[serde(default, deserialize_with = "used_labels")]
    pub labels: BTreeMap<String, String>,
    /// What a watch resumes from.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// RFC 3339 in UTC, as the API writes it (`2026-12-04T18:00:00Z`), so
    /// that its text orders as its time does.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    /// Set once the object is being deleted (a pod terminating, or stuck
    /// so on a node that was lost): another object claiming its address
    /// is the live one.
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub owner_references: Vec<OwnerReference>,
}

impl PartialEq for ObjectMeta {
    fn eq(&self, other: &ObjectMeta) -> bool {
        let ObjectMeta {
            name,
            namespace,
            labels,
            resource_version: _,
            creation_timestamp,
            deletion_timestamp,
            owner_references,
        } = self;
        *name == other.name
            && *namespace == other.namespace
            && *labels == other.labels
            && *creation_timestamp == other.creation_timestamp
            && *deletion_timestamp == other.deletion_timestamp
            && *owner_references == other.owner_references
    }
}

/// Who owns an object (a ReplicaSet owns a Deployment's pods).
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
    /// Deleted, or finished (the watch's view leaves finished pods out),
    /// and kept a while for the flows it had: it names an address only
    /// while no other pod claims it, and is no workload.
    #[serde(skip)]
    pub gone: bool,
}

impl Pod {
    /// It no longer runs: deleted, or finished (`Succeeded`, `Failed`).
    pub fn retired(&self) -> bool {
        self.gone || matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", deserialize_with = "null_as_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    /// `<runtime>://<id>`, absent until the container was created.
    #[serde(default, rename = "containerID")]
    pub container_id: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default)]
    pub status: ServiceStatus,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

/// The addresses a load balancer gave the service (MetalLB, a cloud's).
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs", deserialize_with = "null_as_empty")]
    pub cluster_ips: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<ServicePort>,
    /// `ExternalName` services are a DNS alias with no address or
    /// endpoint of their own: nothing to watch traffic of.
    #[serde(default, rename = "type")]
    pub service_type: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
    /// `null` when the slice's service has no ports.
    #[serde(default)]
    pub ports: Option<Vec<EndpointPort>>,
}

/// The label that names an EndpointSlice's service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label a Deployment's pods carry with their ReplicaSet's hash.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// `None` means ready (the API's own reading of an absent condition).
    #[serde(default)]
    pub ready: Option<bool>,
    /// The pod is shutting down (`None`: it is not).
    #[serde(default)]
    pub terminating: Option<bool>,
    /// Ready, whether or not shutting down (`None`: as `ready`).
    #[serde(default)]
    pub serving: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub addresses: Vec<NodeAddress>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}
