//! What each IP address is in the cluster, built from an inventory List.
//!
//! Rules:
//! - a running pod's IPs (every entry of `podIPs`) name the pod, its
//!   namespace and node, and its containers (with their ports, so a flow's
//!   server port picks the right container);
//! - a pod listed in a service's EndpointSlices also carries that service
//!   (with the slice's ports, so a server port picks the right service);
//! - a service's ClusterIPs name only the service and its namespace: traffic
//!   seen before DNAT;
//! - a node's InternalIP names only the node: host processes and
//!   hostNetwork pods, which share that address, so hostNetwork pods are not
//!   mapped by IP.
//!
//! Pods that finished (Succeeded, Failed) or are being deleted name their
//! old IP only while no running pod has it: their IPs are reused.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::objects::{
    EndpointSlice, Item, List, Node, ObjectMeta, Pod, SERVICE_NAME_LABEL, Service,
};

/// A container and the ports it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime's id, without its `containerd://` style prefix.
    pub id: Arc<str>,
    pub ports: Vec<u16>,
}

/// A service and the ports it reaches this endpoint on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: Arc<str>,
    pub ports: Vec<u16>,
}

/// What kind of cluster object an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Pod,
    /// A Service's own address (a ClusterIP, its load balancer's).
    ServiceIp,
    /// An endpoint of a Service that is no pod and no node: a
    /// selector-less service's hand-written address (a database outside
    /// the cluster), a managed control plane's. Named after its service,
    /// but outside `--cluster-cidr` it is still external.
    Endpoint,
    Node,
}

/// Everything the inventory says about one IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdentityKind,
    pub pod: Option<Arc<str>>,
    pub ns: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    /// A pod's workload: its controller (a Deployment's name for a pod of one
    /// of its ReplicaSets, a StatefulSet's, a DaemonSet's, a Job's), or the
    /// pod itself when nothing owns it.
    pub workload: Option<Arc<str>>,
    /// Services with an address of their own first, then headless ones
    /// (`clusterIP: None`), each by name: where two reach the pod on the
    /// same port (a chart's `redis-headless` beside `redis-master`), the
    /// one clients connect to names the traffic.
    pub services: Vec<ServiceRef>,
    /// In pod spec order.
    pub containers: Vec<ContainerRef>,
}

/// The workload a pod belongs to, from its controlling owner: a ReplicaSet
/// named `<deployment>-<pod-template-hash>` stands for its Deployment, and
/// a Job named `<cronjob>-<scheduled minute>` (the CronJob controller's
/// names: 8 or more digits) for its CronJob (neither ReplicaSets nor Jobs
/// are watched); any other owner is the workload; a pod without one is its
/// own. (A CronJob's runs would otherwise each be a workload of their own,
/// and each a new pair of series in `/metrics`.) A service's address has the
/// service as its workload (a mirror sees traffic to a ClusterIP before
/// it is translated to a pod).
fn workload_of(meta: &ObjectMeta) -> &str {
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or(meta.owner_references.first());
    let Some(owner) = owner else {
        return &meta.name;
    };
    if owner.kind == "ReplicaSet" {
        // The Deployment controller names a ReplicaSet `<name>-<hash>`; the
        // label says which hash, and without it the last segment is it.
        let by_label = meta
            .labels
            .get(crate::objects::POD_TEMPLATE_HASH_LABEL)
            .and_then(|hash| owner.name.strip_suffix(hash.as_str()))
            .and_then(|n| n.strip_suffix('-'));
        let by_shape = owner.name.rsplit_once('-').map(|(name, _)| name);
        if let Some(deployment) = by_label.or(by_shape) {
            return deployment;
        }
    }
    if owner.kind == "Job"
        && let Some((cronjob, minute)) = owner.name.rsplit_once('-')
        && minute.len() >= 8
        && minute.bytes().all(|b| b.is_ascii_digit())
        && !cronjob.is_empty()
    {
        return cronjob;
    }
    &owner.name
}

impl Identity {
    /// A service's address: the service `name` in namespace `ns`, its
    /// workload too, reached on `ports`.
    fn of_service(kind: IdentityKind, ns: Arc<str>, name: &str, ports: Vec<u16>) -> Identity {
        Identity {
            kind,
            pod: None,
            ns: Some(ns),
            node: None,
            workload: Some(name.into()),
            services: vec![ServiceRef {
                name: name.into(),
                ports,
            }],
            containers: Vec::new(),
        }
    }

    /// The service for traffic on `port` (a server port): one whose
    /// ports include it (an EndpointSlice without ports reaches any), none
    /// if no service exposes it (a scrape of a pod's metrics port is not
    /// its service's traffic); a service's own address is that service on
    /// any port. A client (no port): the first by name.
    pub fn service(&self, port: Option<u16>) -> Option<&Arc<str>> {
        match port {
            Some(p) if matches!(self.kind, IdentityKind::Pod | IdentityKind::Node) => {
                (self.services.iter())
                    .find(|s| s.ports.contains(&p))
                    .or_else(|| self.services.iter().find(|s| s.ports.is_empty()))
            }
            _ => self.services.first(),
        }
        .map(|s| &s.name)
    }

    /// The container serving `port`, else the first container.
    pub fn container_id(&self, port: Option<u16>) -> Option<&Arc<str>> {
        port.and_then(|p| self.containers.iter().find(|c| c.ports.contains(&p)))
            .or(self.containers.first())
            .map(|c| &c.id)
    }
}

/// A pod's (namespace, name).
type PodKey = (String, String);

/// Who an address names: who has it now and, for an address pods had
/// before the pod that has it now (a retired pod's, given to a new one),
/// those pods. A flow last seen before the address's pod existed was an
/// earlier pod's.
#[derive(Debug)]
struct Named {
    now: Arc<Identity>,
    earlier: Option<Box<Earlier>>,
}

impl Named {
    fn new(now: Arc<Identity>) -> Named {
        Named { now, earlier: None }
    }
}

/// The pods an address had before the pod that names it now.
#[derive(Debug, Default)]
struct Earlier {
    /// When the pod that names it now was created (Unix nanoseconds).
    since_ns: u64,
    /// Pods created before it that had it, newest first.
    pods: Vec<(u64, Arc<Identity>)>,
}

/// An object's creation time in Unix nanoseconds, if it says.
fn created_ns(meta: &ObjectMeta) -> Option<u64> {
    let t = humantime::parse_rfc3339(meta.creation_timestamp.as_deref()?).ok()?;
    Some(pipeline::time::duration_ns(
        t.duration_since(std::time::UNIX_EPOCH).ok()?,
    ))
}
/// A service's (namespace, name).
type ServiceKey = (String, String);

#[derive(Debug, Default)]
pub struct Inventory {
    /// ahash: every flow's two addresses are looked up at every snapshot.
    by_ip: HashMap<IpAddr, Named, ahash::RandomState>,
    pub pods: usize,
    pub services: usize,
    pub nodes: usize,
    /// Every pod (with an address of its own) and service, sorted by kind,
    /// namespace and name: what "which workloads are idle?" is asked of.
    pub workloads: Vec<Workload>,
    /// Each service's endpoints, one a pod, sorted by address, by
    /// (namespace, service): how a hub finds its agents.
    pub endpoints: HashMap<(String, String), Vec<ServiceEndpoint>>,
    /// Built from every object there is: false while a watch has not listed
    /// every kind yet (or an inventory file has not appeared), when what is
    /// not here may simply not be known yet.
    pub complete: bool,
}

/// One endpoint behind a service, as its EndpointSlices list it: its pod's
/// first address (the one the API's consumers use), its state, its node,
/// its slice's ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceEndpoint {
    pub ip: IpAddr,
    pub state: EndpointState,
    /// The node its pod runs on (`nodeName`), when the slice says.
    pub node: Option<Arc<str>>,
    /// Its slice's ports, with their names: the pods' ports (a Service's
    /// `targetPort`, resolved), shared by the slice's endpoints.
    pub ports: Arc<[(Option<Arc<str>>, u16)]>,
}

/// Whether an endpoint serves, best first. One that does not is still
/// there: a hub names its agent missing rather than forgetting it, which
/// would pass off that node's traffic as none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointState {
    /// Ready, or shutting down but still serving (`serving`: a pod in its
    /// grace period during a rollout or a drain answers until it exits).
    Serving,
    /// Starting, or failing its readiness probe.
    NotReady,
    /// Shutting down and no longer serving.
    Terminating,
}

impl EndpointState {
    fn of(conditions: &crate::objects::EndpointConditions) -> EndpointState {
        // The API reads an absent `ready` as true, and an absent `serving`
        // as `ready` ("consumers should defer to the ready condition"):
        // `serving` is `ready` regardless of terminating (and absent before
        // 1.20).
        let ready = conditions.ready != Some(false);
        let serving = conditions.serving.unwrap_or(ready);
        match conditions.terminating == Some(true) {
            false if ready => EndpointState::Serving,
            false => EndpointState::NotReady,
            true if serving => EndpointState::Serving,
            true => EndpointState::Terminating,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Pod,
    Service,
}

impl WorkloadKind {
    pub const fn name(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "pod",
            WorkloadKind::Service => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub ns: Arc<str>,
    pub name: Arc<str>,
    /// The node a pod runs on.
    pub node: Option<Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a Kubernetes List: {0}")]
pub struct InventoryError(#[from] serde_json::Error);

impl Inventory {
    /// Parses `kubectl get pods,services,endpointslices,nodes -A -o json`.
    pub fn from_json(bytes: &[u8]) -> Result<Inventory, InventoryError> {
        let list: List = serde_json::from_slice(bytes)?;
        Ok(Inventory::from_list(list))
    }

    pub fn from_list(list: List) -> Inventory {
        let mut pods = Vec::new();
        let mut services = Vec::new();
        let mut slices = Vec::new();
        let mut nodes = Vec::new();
        for item in list.items {
            match item {
                Item::Pod(p) => pods.push(p),
                Item::Service(s) => services.push(s),
                Item::EndpointSlice(e) => slices.push(e),
                Item::Node(n) => nodes.push(n),
                Item::Other => {}
            }
        }
        Inventory::from_objects(&pods, &services, &slices, &nodes)
    }

    /// The mapping from the objects themselves (a file's list, or what a
    /// watch holds).
    pub fn from_objects<'o>(
        pods: impl IntoIterator<Item = &'o Pod>,
        services: impl IntoIterator<Item = &'o Service> + Clone,
        slices: impl IntoIterator<Item = &'o EndpointSlice>,
        nodes: impl IntoIterator<Item = &'o Node>,
    ) -> Inventory {
        // When two objects claim one address, one not being deleted (a pod
        // terminating on a lost node keeps its address in the API while a
        // new pod has it), then the newer one's, then a deterministic
        // order: a finished pod whose status lags behind the new pod given
        // its address; a node replaced under its address while the old Node
        // object lingers (the watch's maps, and so the order they come in,
        // differ from one process to the next).
        let newer = |a: &ObjectMeta, b: &ObjectMeta| {
            (b.creation_timestamp.cmp(&a.creation_timestamp))
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        };
        let newest_first = |a: &ObjectMeta, b: &ObjectMeta| {
            (a.deletion_timestamp
                .is_some()
                .cmp(&b.deletion_timestamp.is_some()))
            .then_with(|| newer(a, b))
        };
        // Pods still running before those retired (deleted, finished):
        // a retired pod names its old address only while no running pod
        // has it, so that its flows, which stay until their idle timeout,
        // keep their names. Retired pods by age alone: one deleted is no
        // less the address's last owner than one that finished.
        let mut pods: Vec<&Pod> = pods.into_iter().collect();
        pods.sort_by(|a, b| {
            (a.retired().cmp(&b.retired())).then_with(|| match a.retired() {
                false => newest_first(&a.metadata, &b.metadata),
                true => newer(&a.metadata, &b.metadata),
            })
        });
        let mut nodes_in_order: Vec<&Node> = nodes.into_iter().collect();
        nodes_in_order.sort_by(|a, b| newest_first(&a.metadata, &b.metadata));

        let mut inv = Inventory {
            pods: pods.len(),
            services: services.clone().into_iter().count(),
            nodes: nodes_in_order.len(),
            complete: true,
            ..Inventory::default()
        };

        let headless: std::collections::HashSet<(&str, &str)> = services
            .clone()
            .into_iter()
            .filter(|s| s.spec.cluster_ip.as_deref() == Some("None"))
            .map(|s| {
                (
                    s.metadata.namespace.as_deref().unwrap_or("default"),
                    s.metadata.name.as_str(),
                )
            })
            .collect();
        // Services reaching each pod, through the EndpointSlices, with
        // their ports: a set a service, found by name (a pod reached by
        // many services, or through many endpoints of a slice of many
        // ports, costs no more than it holds).
        let mut pod_services: HashMap<PodKey, HashMap<String, BTreeSet<u16>>> = HashMap::new();
        // Each service's endpoints with the pod each stands for, if named.
        let mut endpoints: HashMap<ServiceKey, Vec<(Option<PodKey>, ServiceEndpoint)>> =
            HashMap::new();
        // Endpoints that are no pod (a managed control plane behind the
        // `kubernetes` Service, a Service without a selector whose
        // endpoints someone wrote): their addresses are the service's.
        let mut podless: Vec<(IpAddr, ServiceKey, Vec<u16>)> = Vec::new();
        for slice in slices {
            let Some(service) = slice.metadata.labels.get(SERVICE_NAME_LABEL) else {
                continue;
            };
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            let of_service = endpoints.entry((ns.clone(), service.clone())).or_default();
            let ports: Vec<u16> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port)
                .collect();
            let named_ports: Arc<[(Option<Arc<str>>, u16)]> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| Some((p.name.as_deref().map(Into::into), p.port?)))
                .collect();
            // The slice's pods, each once: its ports are added to each a
            // single time, however many endpoints name it.
            let mut slice_pods: std::collections::HashSet<PodKey> = Default::default();
            for endpoint in &slice.endpoints {
                let pod: Option<PodKey> = endpoint.target_ref.as_ref().and_then(|t| {
                    let name = t
                        .name
                        .clone()
                        .filter(|_| t.kind.as_deref() == Some("Pod"))?;
                    Some((t.namespace.clone().unwrap_or_else(|| ns.clone()), name))
                });
                let first_in_slice = pod.as_ref().is_some_and(|p| slice_pods.insert(p.clone()));
                if let Some(pod) = pod.as_ref().filter(|_| first_in_slice) {
                    let of_pod = pod_services.entry(pod.clone()).or_default();
                    match of_pod.get_mut(service.as_str()) {
                        Some(set) => set.extend(&ports),
                        None => {
                            of_pod.insert(service.clone(), ports.iter().copied().collect());
                        }
                    }
                }
                // The first address only: the controller writes one, and
                // the API says consumers use the first (an FQDN slice's
                // addresses are names, not read here).
                if let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse().ok()) {
                    if pod.is_none() {
                        podless.push((ip, (ns.clone(), service.clone()), ports.clone()));
                    }
                    of_service.push((
                        pod,
                        ServiceEndpoint {
                            ip,
                            state: EndpointState::of(&endpoint.conditions),
                            node: endpoint.node_name.as_deref().map(Into::into),
                            ports: named_ports.clone(),
                        },
                    ));
                }
            }
        }

        for (service, mut of_service) in endpoints {
            // One endpoint a pod (a dual-stack Service has a slice of each
            // family) and one an address (a hostNetwork DaemonSet's old and
            // new pod share their node's during a rollout): the best state
            // listed in any slice, then the lower address (IPv4 first).
            of_service.sort_by_key(|(_, e)| (e.state, e.ip));
            let mut pods_seen = std::collections::HashSet::new();
            of_service.retain(|(pod, _)| pod.as_ref().is_none_or(|p| pods_seen.insert(p.clone())));
            let mut kept: Vec<ServiceEndpoint> = of_service.into_iter().map(|(_, e)| e).collect();
            kept.sort_by_key(|e| (e.ip, e.state));
            kept.dedup_by_key(|e| e.ip);
            inv.endpoints.insert(service, kept);
        }

        // The pod naming each address: its creation time is read only
        // where another pod claims the address too.
        let mut owners: HashMap<IpAddr, &ObjectMeta> = HashMap::new();
        for pod in pods {
            if pod.spec.host_network {
                continue;
            }
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let mut services: Vec<ServiceRef> = pod_services
                .remove(&(ns.clone(), pod.metadata.name.clone()))
                .unwrap_or_default()
                .into_iter()
                .map(|(name, ports)| ServiceRef {
                    name: name.as_str().into(),
                    ports: ports.into_iter().collect(),
                })
                .collect();
            services.sort_by_cached_key(|s| {
                (headless.contains(&(ns.as_str(), &*s.name)), s.name.clone())
            });
            let containers = pod
                .spec
                .containers
                .iter()
                .filter_map(|c| {
                    let status = pod
                        .status
                        .container_statuses
                        .iter()
                        .find(|s| s.name == c.name)?;
                    let raw = status.container_id.as_deref()?;
                    let id = raw.split_once("://").map_or(raw, |(_, id)| id);
                    Some(ContainerRef {
                        id: id.into(),
                        ports: c.ports.iter().map(|p| p.container_port).collect(),
                    })
                })
                .collect();
            let identity = Arc::new(Identity {
                kind: IdentityKind::Pod,
                pod: Some(pod.metadata.name.as_str().into()),
                ns: Some(ns.as_str().into()),
                node: pod.spec.node_name.as_deref().map(Into::into),
                workload: Some(workload_of(&pod.metadata).into()),
                services,
                containers,
            });
            if !pod.retired() {
                inv.workloads.push(Workload {
                    kind: WorkloadKind::Pod,
                    ns: identity.ns.clone().unwrap_or_else(|| "default".into()),
                    name: pod.metadata.name.as_str().into(),
                    node: identity.node.clone(),
                });
            }
            let ips = pod
                .status
                .pod_ips
                .iter()
                .map(|p| p.ip.as_str())
                .chain(pod.status.pod_ip.as_deref());
            for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
                match inv.by_ip.entry(ip) {
                    Entry::Vacant(v) => {
                        v.insert(Named::new(identity.clone()));
                        owners.insert(ip, &pod.metadata);
                    }
                    // Pods come newest first once running and retired are
                    // apart: one created before the address's pod had it
                    // before.
                    Entry::Occupied(mut o) => {
                        let since = owners.get(&ip).and_then(|owner| created_ns(owner));
                        if let (Some(since_ns), Some(created)) = (since, created_ns(&pod.metadata))
                            && created < since_ns
                        {
                            let earlier = o.get_mut().earlier.get_or_insert_default();
                            earlier.since_ns = since_ns;
                            earlier.pods.push((created, identity.clone()));
                        }
                    }
                }
            }
        }
        for earlier in inv.by_ip.values_mut().filter_map(|n| n.earlier.as_mut()) {
            earlier.pods.sort_by_key(|p| std::cmp::Reverse(p.0));
        }

        let mut outside_service_ips = Vec::new();
        // In a stable order: of services sharing a load balancer's address
        // (MetalLB's allow-shared-ip), the first by namespace and name
        // names it, the same in every process.
        let mut services: Vec<&Service> = services.into_iter().collect();
        services.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        for svc in services {
            let ns: Arc<str> = svc
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default")
                .into();
            // A DNS alias (ExternalName) has no address of its own: no
            // traffic is ever its, and listed it would always be idle.
            if svc.spec.service_type.as_deref() != Some("ExternalName") {
                inv.workloads.push(Workload {
                    kind: WorkloadKind::Service,
                    ns: ns.clone(),
                    name: svc.metadata.name.as_str().into(),
                    node: None,
                });
            }
            let identity = Arc::new(Identity::of_service(
                IdentityKind::ServiceIp,
                ns,
                &svc.metadata.name,
                svc.spec.ports.iter().map(|p| p.port).collect(),
            ));
            let ips = svc
                .spec
                .cluster_ips
                .iter()
                .map(String::as_str)
                .chain(svc.spec.cluster_ip.as_deref());
            // "None" marks a headless service: no ClusterIP.
            for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
                inv.by_ip
                    .entry(ip)
                    .or_insert_with(|| Named::new(identity.clone()));
            }
            // Its load balancer's addresses, which a mirror port before
            // kube-proxy sees (MetalLB on a SPAN port), named after the
            // nodes: some load balancers hand out node addresses. Only
            // what a controller wrote: `spec.externalIPs` any tenant who
            // may make a Service can set to any address (CVE-2020-8554).
            let outside = svc
                .status
                .load_balancer
                .ingress
                .iter()
                .filter_map(|i| i.ip.as_deref());
            for ip in outside.filter_map(|s| s.parse::<IpAddr>().ok()) {
                outside_service_ips.push((ip, identity.clone()));
            }
        }

        for node in nodes_in_order {
            let identity = Arc::new(Identity {
                kind: IdentityKind::Node,
                pod: None,
                ns: None,
                node: Some(node.metadata.name.as_str().into()),
                workload: None,
                services: Vec::new(),
                containers: Vec::new(),
            });
            for addr in node
                .status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP")
            {
                if let Ok(ip) = addr.address.parse::<IpAddr>() {
                    inv.by_ip
                        .entry(ip)
                        .or_insert_with(|| Named::new(identity.clone()));
                }
            }
        }
        for (ip, identity) in outside_service_ips {
            inv.by_ip.entry(ip).or_insert(Named::new(identity));
        }
        // Last: a pod's or a node's name for the address comes first (a
        // self-managed control plane's endpoints are its nodes).
        podless.sort();
        for (ip, (ns, service), ports) in podless {
            inv.by_ip.entry(ip).or_insert_with(|| {
                Named::new(Arc::new(Identity::of_service(
                    IdentityKind::Endpoint,
                    ns.as_str().into(),
                    &service,
                    ports,
                )))
            });
        }
        inv.workloads.sort();
        inv
    }

    /// The endpoints behind service `ns/name`, one a pod, sorted by address.
    pub fn endpoints_of(&self, ns: &str, name: &str) -> &[ServiceEndpoint] {
        self.endpoints
            .get(&(ns.to_owned(), name.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Who has address `ip` now.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Identity>> {
        self.by_ip.get(&ip).map(|n| &n.now)
    }

    /// Who had address `ip` at `at_ns` (Unix nanoseconds): a flow's names
    /// by its last packet, so that an address given to a new pod (a rollout,
    /// a CronJob's next run) does not rename an earlier pod's flows, held
    /// until their idle timeout. Before every pod known to have had it
    /// (an old capture read with today's names), who has it now, as
    /// without times. (Creation times are the API server's clock, to the
    /// second; an address is given a moment after its pod is created.)
    pub fn lookup_at(&self, ip: IpAddr, at_ns: u64) -> Option<&Arc<Identity>> {
        let named = self.by_ip.get(&ip)?;
        match &named.earlier {
            Some(earlier) if at_ns < earlier.since_ns => earlier
                .pods
                .iter()
                .find(|(created, _)| *created <= at_ns)
                .map_or(Some(&named.now), |(_, pod)| Some(pod)),
            _ => Some(&named.now),
        }
    }

    /// Addresses mapped.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! The mapping rules, on the realistic objects of `demo/inventory.json`
    //! (kubectl's output shape: a v1 List with managedFields-free objects).
    use super::*;

    fn inventory() -> Inventory {
        Inventory::from_json(include_bytes!("../../demo/inventory.json")).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn workloads_of_deployments_cronjobs_and_bare_pods() {
        let meta = |name: &str, owner: Option<(&str, &str)>| ObjectMeta {
            name: name.into(),
            owner_references: owner
                .map(|(kind, name)| crate::objects::OwnerReference {
                    kind: kind.into(),
                    name: name.into(),
                    controller: Some(true),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        for (pod, owner, workload) in [
            ("web-7d4b9-x2x", Some(("ReplicaSet", "web-7d4b9")), "web"),
            (
                "backup-29400300-abcde",
                Some(("Job", "backup-29400300")),
                "backup",
            ),
            ("migrate-xyz", Some(("Job", "migrate")), "migrate"),
            ("seed-v2-q", Some(("Job", "seed-v2")), "seed-v2"),
            ("db-0", Some(("StatefulSet", "db")), "db"),
            ("debug", None, "debug"),
        ] {
            assert_eq!(workload_of(&meta(pod, owner)), workload, "{pod}");
        }
    }

    /// An ExternalName service (a DNS alias) is no workload: it has no
    /// address, so it would always be listed idle.
    #[test]
    fn an_external_name_service_is_no_workload() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "payments-ext", "namespace": "shop"},
             "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
            {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
             "spec": {"type": "ClusterIP", "clusterIP": "198.19.0.9", "ports": [{"port": 80}]}},
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = inv.workloads.iter().map(|w| &*w.name).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn pod_ips_name_pod_namespace_node_and_container_by_port() {
        let inv = inventory();
        let pg = inv.lookup(ip("198.19.0.0")).expect("postgres-0");
        assert_eq!(pg.kind, IdentityKind::Pod);
        assert_eq!(pg.pod.as_deref(), Some("postgres-0"));
        assert_eq!(pg.ns.as_deref(), Some("data"));
        assert_eq!(pg.node.as_deref(), Some("node-a"));
        let postgres = pg.container_id(Some(5432)).unwrap().to_string();
        let exporter = pg.container_id(Some(9187)).unwrap().to_string();
        assert_ne!(postgres, exporter);
        assert!(
            !postgres.contains("://"),
            "runtime prefix stripped: {postgres}"
        );
        assert_eq!(postgres.len(), 64);
        // No container declares port 80: the first container.
        assert_eq!(pg.container_id(Some(80)).unwrap().as_ref(), postgres);
        assert_eq!(pg.container_id(None).unwrap().as_ref(), postgres);
        // Dual stack: the IPv6 podIP names the same pod.
        assert_eq!(
            inv.lookup(ip("2001:db8:1::")).unwrap().pod.as_deref(),
            Some("postgres-0")
        );
    }

    /// A node replaced under its address while the old Node object
    /// lingers: the newer names the address, whatever order they come in.
    #[test]
    fn two_nodes_claiming_one_address_the_newer_names_it() {
        let node = |name: &str, created: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "status": {"addresses": [{"type": "InternalIP", "address": "198.19.0.4"}]},
            }))
            .unwrap()
        };
        let (old, new) = (
            node("node-a-old", "2026-01-01T00:00:00Z"),
            node("node-a", "2026-06-01T00:00:00Z"),
        );
        for nodes in [[&old, &new], [&new, &old]] {
            let inv = Inventory::from_objects([], [], [], nodes);
            let named = inv.lookup("198.19.0.4".parse().unwrap()).unwrap();
            assert_eq!(named.node.as_deref(), Some("node-a"));
        }
    }

    #[test]
    fn a_services_endpoints_one_a_pod_with_their_state_and_node() {
        let slice = |name: &str, family: &str, endpoints: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "monitoring",
                             "labels": {"kubernetes.io/service-name": "flowtap-agents"}},
                "addressType": family, "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8898, "protocol": "TCP"}]
            })
        };
        let pod = |name: &str| serde_json::json!({"kind": "Pod", "name": name, "namespace": "monitoring"});
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            slice("a", "IPv4", serde_json::json!([
                {"addresses": ["198.18.0.3"], "conditions": {"ready": true}, "nodeName": "n3"},
                {"addresses": ["198.18.0.1"]},
                {"addresses": ["198.18.0.2"], "conditions": {"ready": false}, "nodeName": "n2"},
                // Shutting down: still serving in its grace period, or not.
                {"addresses": ["198.18.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["198.18.0.6"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                // `serving` absent: it is `ready`, itself true when absent.
                {"addresses": ["198.18.0.9"], "conditions": {"terminating": true}},
                {"addresses": ["198.18.0.10"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["198.18.0.5"], "conditions": {"ready": false}},
                // Two addresses: the first is the endpoint's.
                {"addresses": ["198.18.0.7", "198.18.0.8"], "targetRef": pod("p7")},
            ])),
            // Another slice of the same service lists .5 ready.
            slice("b", "IPv4", serde_json::json!([
                {"addresses": ["198.18.0.5"], "conditions": {"ready": true}},
            ])),
            // Dual stack: the same pod in the IPv6 slice is one endpoint.
            slice("c", "IPv6", serde_json::json!([
                {"addresses": ["2001:db8::7"], "targetRef": pod("p7")},
            ])),
            // A Service with no pods: the API sends `null`, not `[]`.
            slice("d", "IPv4", serde_json::Value::Null),
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        assert!(inv.complete);
        let endpoint = |ip: &str, state, node: Option<&str>| ServiceEndpoint {
            ip: ip.parse().unwrap(),
            state,
            node: node.map(Into::into),
            ports: Arc::from([(Some(Arc::from("http")), 8898)]),
        };
        use EndpointState::*;
        assert_eq!(
            inv.endpoints_of("monitoring", "flowtap-agents"),
            [
                endpoint("198.18.0.1", Serving, None),
                endpoint("198.18.0.2", NotReady, Some("n2")),
                endpoint("198.18.0.3", Serving, Some("n3")),
                endpoint("198.18.0.4", Serving, None),
                endpoint("198.18.0.5", Serving, None),
                endpoint("198.18.0.6", Terminating, None),
                endpoint("198.18.0.7", Serving, None),
                endpoint("198.18.0.9", Serving, None),
                endpoint("198.18.0.10", Terminating, None),
            ]
        );
        assert_eq!(inv.endpoints_of("monitoring", "other"), []);
    }

    /// A chart's headless service beside the one clients connect to, both
    /// reaching the pod on its port: the traffic is the second's, before
    /// kube-proxy's translation (its ClusterIP) and after (the pod).
    #[test]
    fn a_pod_behind_a_headless_service_and_another_is_named_by_the_other() {
        let service = |name: &str, cluster_ip: &str| {
            serde_json::json!({"kind": "Service", "metadata": {"name": name, "namespace": "db"},
                "spec": {"clusterIP": cluster_ip, "ports": [{"port": 6379}]}})
        };
        let slice = |service: &str| {
            serde_json::json!({"kind": "EndpointSlice",
                "metadata": {"name": format!("{service}-x"), "namespace": "db",
                             "labels": {"kubernetes.io/service-name": service}},
                "endpoints": [{"addresses": ["198.18.1.1"],
                               "targetRef": {"kind": "Pod", "name": "redis-master-0", "namespace": "db"}}],
                "ports": [{"port": 6379}]})
        };
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "redis-master-0", "namespace": "db"},
             "status": {"phase": "Running", "podIP": "198.18.1.1"}},
            service("redis-headless", "None"),
            service("redis-master", "198.19.0.20"),
            slice("redis-headless"),
            slice("redis-master"),
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        let pod = inv.lookup(ip("198.18.1.1")).unwrap();
        assert_eq!(
            pod.service(Some(6379)).map(|s| s.as_ref()),
            Some("redis-master")
        );
        assert_eq!(pod.service(None).map(|s| s.as_ref()), Some("redis-master"));
        let cluster_ip = inv.lookup(ip("198.19.0.20")).unwrap();
        assert_eq!(
            cluster_ip.service(Some(6379)).map(|s| s.as_ref()),
            Some("redis-master")
        );
    }

    /// The `kubernetes` Service's endpoints are the control plane's, no
    /// pod: traffic to them after kube-proxy's translation is the service's,
    /// not an address outside the cluster. A node's name comes first.
    #[test]
    fn an_endpoint_that_is_no_pod_is_named_by_its_service() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"clusterIP": "198.19.0.1", "ports": [{"port": 443}]}},
            {"kind": "EndpointSlice",
             "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "kubernetes"}},
             "endpoints": [{"addresses": ["198.18.9.10"]}, {"addresses": ["198.18.9.11"]}],
             "ports": [{"port": 6443}]},
            {"kind": "Node", "metadata": {"name": "cp-1"},
             "status": {"addresses": [{"type": "InternalIP", "address": "198.18.9.11"}]}},
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        let api = inv.lookup(ip("198.18.9.10")).unwrap();
        assert_eq!(api.kind, IdentityKind::Endpoint);
        assert_eq!(api.ns.as_deref(), Some("default"));
        assert_eq!(
            api.service(Some(6443)).map(|s| s.as_ref()),
            Some("kubernetes")
        );
        let node = inv.lookup(ip("198.18.9.11")).unwrap();
        assert_eq!(node.node.as_deref(), Some("cp-1"));
    }

    #[test]
    fn lists_the_api_sends_as_null_read_as_empty() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "p", "namespace": "shop", "labels": null,
                                         "ownerReferences": null},
             "spec": {"containers": null},
             "status": {"podIP": "198.18.1.1", "podIPs": null, "containerStatuses": null}},
            {"kind": "Service", "metadata": {"name": "s", "namespace": "shop"},
             "spec": {"clusterIP": "198.18.2.1", "clusterIPs": null, "ports": null}},
            {"kind": "Node", "metadata": {"name": "n"}, "status": {"addresses": null}},
            {"kind": "EndpointSlice", "metadata": {"name": "s-x", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "s"}},
             "endpoints": [{"addresses": null}], "ports": null},
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        assert_eq!((inv.pods, inv.services, inv.nodes), (1, 1, 1));
        let p = inv.lookup(ip("198.18.1.1")).unwrap();
        assert_eq!(p.pod.as_deref(), Some("p"));
        assert_eq!(
            inv.lookup(ip("198.18.2.1")).unwrap().workload.as_deref(),
            Some("s")
        );
        assert_eq!(inv.endpoints_of("shop", "s"), []);
    }

    #[test]
    fn an_address_two_pods_claim_is_the_newer_ones() {
        let pod = |name: &str, created: &str| {
            serde_json::json!({"kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created,
                             "labels": {"app": "web", "pod-template-hash": "5d4f8"}},
                "status": {"phase": "Running", "podIP": "198.18.1.1"}})
        };
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            pod("a-old", "2026-12-04T10:00:00Z"),
            pod("z-new", "2026-12-04T11:00:00Z"),
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        assert_eq!(
            inv.lookup(ip("198.18.1.1")).unwrap().pod.as_deref(),
            Some("z-new")
        );
        // Unless the newer one is being deleted (terminating on a lost node,
        // its status stale) and the older one, started later, has it now.
        let mut terminating = pod("z-lost", "2026-12-04T11:00:00Z");
        terminating["metadata"]["deletionTimestamp"] = "2026-12-04T12:00:00Z".into();
        let claimed = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            pod("a-old", "2026-12-04T10:00:00Z"),
            terminating,
        ]});
        let inv = Inventory::from_json(claimed.to_string().as_bytes()).unwrap();
        assert_eq!(
            inv.lookup(ip("198.18.1.1")).unwrap().pod.as_deref(),
            Some("a-old")
        );
        // Only the labels flowtap reads are kept.
        let objects: List = serde_json::from_value(list).unwrap();
        let Item::Pod(p) = &objects.items[0] else {
            panic!("{objects:?}")
        };
        assert_eq!(
            p.metadata.labels.keys().collect::<Vec<_>>(),
            ["pod-template-hash"]
        );
    }

    #[test]
    fn services_reach_pods_through_endpointslices_by_port() {
        let inv = inventory();
        let pg = inv.lookup(ip("198.19.0.0")).unwrap();
        assert_eq!(pg.service(Some(5432)).map(|s| s.as_ref()), Some("postgres"));
        assert_eq!(
            pg.service(Some(9187)).map(|s| s.as_ref()),
            Some("postgres-metrics")
        );
        // A client has no port: the first service by name.
        assert_eq!(pg.service(None).map(|s| s.as_ref()), Some("postgres"));
        // A port no service exposes (a pod's own metrics, scraped): none.
        assert_eq!(pg.service(Some(7777)), None);
        // A service without ports reaches any, after one that names it.
        let mut both = (**pg).clone();
        both.services.insert(
            0,
            ServiceRef {
                name: "db-headless".into(),
                ports: Vec::new(),
            },
        );
        assert_eq!(
            both.service(Some(5432)).map(|s| s.as_ref()),
            Some("postgres")
        );
        assert_eq!(
            both.service(Some(7777)).map(|s| s.as_ref()),
            Some("db-headless")
        );
        let frontend = inv.lookup(ip("2001:db8::1")).unwrap();
        assert_eq!(frontend.service(None).map(|s| s.as_ref()), Some("frontend"));
        let worker = inv.lookup(ip("198.18.0.4")).unwrap();
        assert_eq!(worker.pod.as_deref(), Some("orders-worker-0"));
        assert_eq!(worker.service(None), None, "no service selects the workers");
    }

    /// A pod reached through many endpoints of a slice of many ports
    /// (one endpoint a copy of the pod, as a hand-written slice may have),
    /// and by many services: each service once, its ports once each.
    /// Before, every endpoint added the slice's ports again (4,000 ports
    /// by 40,000 endpoints held 594 MiB) and each service was looked for
    /// among the pod's others (60,000 services took 4.4 s).
    #[test]
    fn a_pod_s_services_hold_each_port_once() {
        let endpoint = serde_json::json!({"addresses": ["198.18.1.1"],
            "targetRef": {"kind": "Pod", "name": "p", "namespace": "shop"}});
        let ports: Vec<_> = (1..=100u16)
            .rev()
            .map(|port| serde_json::json!({"port": port}))
            .collect();
        let slice = |service: &str, endpoints: usize| {
            serde_json::json!({"kind": "EndpointSlice",
                "metadata": {"name": format!("{service}-x"), "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": service}},
                "endpoints": vec![endpoint.clone(); endpoints], "ports": ports})
        };
        let mut items = vec![serde_json::json!({"kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop"},
            "status": {"phase": "Running", "podIP": "198.18.1.1"}})];
        items.push(slice("many", 1_000));
        items.extend((0..2_000).map(|i| slice(&format!("s{i:04}"), 1)));
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        let p = inv.lookup(ip("198.18.1.1")).unwrap();
        assert_eq!(p.services.len(), 2_001);
        assert_eq!(&*p.services[0].name, "many");
        assert_eq!(p.services[0].ports, (1..=100).collect::<Vec<u16>>());
        assert!(p.services.iter().all(|s| s.ports.len() == 100));
    }

    #[test]
    fn cluster_ips_name_only_service_and_namespace() {
        let inv = inventory();
        for addr in ["198.19.0.2", "2001:db8:1::2"] {
            let gw = inv.lookup(ip(addr)).unwrap();
            assert_eq!(gw.kind, IdentityKind::ServiceIp);
            assert_eq!((gw.pod.as_deref(), gw.node.as_deref()), (None, None));
            assert_eq!(gw.ns.as_deref(), Some("shop"));
            assert_eq!(
                gw.service(Some(443)).map(|s| s.as_ref()),
                Some("api-gateway")
            );
        }
        assert_eq!(
            inv.lookup(ip("198.19.255.53"))
                .unwrap()
                .service(None)
                .map(|s| s.as_ref()),
            Some("kube-dns")
        );
    }

    #[test]
    fn node_ips_name_only_the_node_and_host_network_pods_are_not_mapped() {
        let inv = inventory();
        let node = inv.lookup(ip("198.19.0.4")).unwrap();
        assert_eq!(
            node.kind,
            IdentityKind::Node,
            "kube-proxy (hostNetwork) does not claim the node's IP"
        );
        assert_eq!(node.node.as_deref(), Some("node-a"));
        assert_eq!((node.pod.as_deref(), node.ns.as_deref()), (None, None));
        assert!(
            inv.lookup(ip("203.0.113.10")).is_none(),
            "ExternalIPs are not InternalIPs"
        );
    }

    #[test]
    fn finished_pods_do_not_claim_reused_ips() {
        let inv = inventory();
        assert_eq!(
            inv.lookup(ip("198.18.0.9")).unwrap().pod.as_deref(),
            Some("backup-agent-5f7d8c6b9-m3ntq")
        );
    }

    /// A pod deleted or finished names its old address while no running
    /// pod has it (its flows stay in answers until their idle timeout),
    /// and is no workload: a CronJob's pod that finished, a Deployment's
    /// old pod after a rollout.
    #[test]
    fn retired_pods_name_their_address_until_a_running_pod_has_it() {
        let pod = |name: &str, phase: &str, ip: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "batch", "creationTimestamp": "2026-12-04T10:00:00Z"},
                "status": {"phase": phase, "podIP": ip}}))
            .unwrap()
        };
        let finished = pod("report-29400300-xyz12", "Succeeded", "198.18.0.5");
        let mut deleted = pod("web-7d4b9c-aaaaa", "Running", "198.18.0.1");
        deleted.gone = true;
        // Older than the pods it loses to: retired pods give way whatever
        // their age.
        let mut newer_deleted = pod("web-7d4b9c-bbbbb", "Running", "198.18.0.2");
        newer_deleted.metadata.creation_timestamp = Some("2026-12-04T12:00:00Z".into());
        newer_deleted.gone = true;
        let running = pod("etl-7c8d9-zzzzz", "Running", "198.18.0.2");
        let inv =
            Inventory::from_objects([&finished, &deleted, &newer_deleted, &running], [], [], []);
        let named = |addr: &str| inv.lookup(ip(addr)).and_then(|i| i.pod.as_deref());
        assert_eq!(named("198.18.0.5"), Some("report-29400300-xyz12"));
        assert_eq!(named("198.18.0.1"), Some("web-7d4b9c-aaaaa"));
        assert_eq!(named("198.18.0.2"), Some("etl-7c8d9-zzzzz"));
        let listed: Vec<&str> = inv.workloads.iter().map(|w| w.name.as_ref()).collect();
        assert_eq!(listed, ["etl-7c8d9-zzzzz"], "retired pods are no workloads");
    }

    /// An address given to a new pod names the flows of before that pod
    /// existed (held until their idle timeout) after the pod that had it
    /// then, whichever of the earlier ones that was.
    #[test]
    fn an_address_given_to_a_new_pod_names_earlier_flows_after_the_pod_of_their_time() {
        /// The pod named at 198.18.0.7 at time `t` (RFC 3339).
        fn named_at<'i>(inv: &'i Inventory, t: &str) -> Option<&'i str> {
            let t = humantime::parse_rfc3339(t).unwrap();
            let ns = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            inv.lookup_at(ip("198.18.0.7"), ns)
                .and_then(|i| i.pod.as_deref())
        }
        let pod = |name: &str, created: &str, gone: bool| -> Pod {
            let mut pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
                "status": {"phase": "Running", "podIP": "198.18.0.7"}}))
            .unwrap();
            pod.gone = gone;
            pod
        };
        let first = pod("web-1", "2026-12-04T10:00:00Z", true);
        let second = pod("web-2", "2026-12-04T11:00:00Z", true);
        let now = pod("web-3", "2026-12-04T12:00:00Z", false);
        // A finished pod created after the running one (its status lagging
        // behind) had the address before it, if at all: never named.
        let mut lagging = pod("web-4", "2026-12-04T12:30:00Z", true);
        lagging.status.phase = Some("Succeeded".into());
        let inv = Inventory::from_objects([&lagging, &now, &first, &second], [], [], []);
        let at = |t: &str| named_at(&inv, t);
        assert_eq!(at("2026-12-04T12:00:01Z"), Some("web-3"));
        assert_eq!(at("2026-12-04T13:00:00Z"), Some("web-3"));
        assert_eq!(at("2026-12-04T11:59:59Z"), Some("web-2"));
        assert_eq!(at("2026-12-04T10:30:00Z"), Some("web-1"));
        assert_eq!(
            at("2026-12-04T09:00:00Z"),
            Some("web-3"),
            "before every pod known, who has it now"
        );
        assert_eq!(
            inv.lookup(ip("198.18.0.7")).and_then(|i| i.pod.as_deref()),
            Some("web-3"),
            "who has it now"
        );
        // No running pod: the newest retired one has it, however it
        // retired (deleted, with a deletion time, or finished, without).
        let mut finished = pod("job-1", "2026-12-04T10:00:00Z", false);
        finished.status.phase = Some("Succeeded".into());
        let mut failed = pod("job-2", "2026-12-04T11:00:00Z", true);
        failed.status.phase = Some("Failed".into());
        failed.metadata.deletion_timestamp = Some("2026-12-04T11:30:00Z".into());
        let inv = Inventory::from_objects([&finished, &failed], [], [], []);
        let at = |t: &str| named_at(&inv, t);
        assert_eq!(at("2026-12-04T10:30:00Z"), Some("job-1"));
        assert_eq!(at("2026-12-04T11:30:00Z"), Some("job-2"));
        // Without creation times, who has it now.
        let mut undated = now.clone();
        undated.metadata.creation_timestamp = None;
        let inv = Inventory::from_objects([&undated, &first], [], [], []);
        assert_eq!(
            inv.lookup_at(ip("198.18.0.7"), 0)
                .and_then(|i| i.pod.as_deref()),
            Some("web-3")
        );
    }

    /// A load balancer's addresses name the service, as its ClusterIP
    /// does (a SPAN port before kube-proxy sees them: MetalLB
    /// on-premises), but never a node's address that a load balancer
    /// handed out (k3s's ServiceLB), and `spec.externalIPs`, which any
    /// tenant may set to any address, name nothing.
    #[test]
    fn load_balancer_addresses_name_their_service() {
        let list = serde_json::json!({"kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "web-lb", "namespace": "shop"},
             "spec": {"clusterIP": "198.19.1.1", "externalIPs": ["203.0.113.7"],
                      "ports": [{"port": 80}]},
             "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.50"}, {"hostname": "lb.example"},
                                                     {"ip": "198.18.9.1"}]}}},
            {"kind": "Node", "metadata": {"name": "node-a"},
             "status": {"addresses": [{"type": "InternalIP", "address": "198.18.9.1"}]}},
        ]});
        let inv = Inventory::from_json(list.to_string().as_bytes()).unwrap();
        assert!(inv.lookup(ip("203.0.113.7")).is_none());
        for addr in ["198.19.1.1", "203.0.113.50"] {
            let svc = inv.lookup(ip(addr)).unwrap();
            assert_eq!(svc.kind, IdentityKind::ServiceIp, "{addr}");
            assert_eq!(svc.service(Some(80)).map(|s| s.as_ref()), Some("web-lb"));
        }
        assert_eq!(
            inv.lookup(ip("198.18.9.1")).unwrap().node.as_deref(),
            Some("node-a")
        );
    }

    #[test]
    fn counts_and_tolerance_of_unknown_kinds() {
        let inv = inventory();
        assert_eq!((inv.pods, inv.services, inv.nodes), (19, 10, 3));
        let other = br#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"status":{"podIP":"198.18.9.9","phase":"Running"}}]}"#;
        let inv = Inventory::from_json(other).unwrap();
        assert_eq!(
            inv.lookup(ip("198.18.9.9")).unwrap().pod.as_deref(),
            Some("p")
        );
        assert!(Inventory::from_json(b"{\"items\": 3}").is_err());
    }
}
