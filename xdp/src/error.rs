//! What can go wrong setting up live capture, in terms an operator can act on.

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("interface {iface}: {source}")]
    Interface {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "interface {iface} is down: a capture on it would receive nothing. Bring it up first \
         (`ip link set {iface} up`; a mirror port needs no address)"
    )]
    InterfaceDown { iface: String },
    #[error("loading the embedded BPF object: {0} (needs CAP_BPF and CAP_NET_ADMIN, or root)")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("loading program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error(
        "interface {iface} already has an XDP program attached (another flowtap, or another tool's: a CNI, a load balancer), \
         and flowtap does not replace it; `ip link show dev {iface}` names it (prog/xdp id N, `bpftool prog show id N` says whose). \
         Capture on another interface, or remove it only if it is yours (`ip link set dev {iface} xdp off`)"
    )]
    XdpBusy { iface: String },
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    XdpAttach {
        iface: String,
        mode: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching the TC mirror to {iface} ({direction}): {source}")]
    TcAttach {
        iface: String,
        direction: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error(
        "host mode on {iface} needs Linux 6.6 or later (TCX links, which keep flowtap's mirror first \
         and go with the process); on this kernel capture a mirror port instead (--mode span)"
    )]
    HostModeNeedsTcx { iface: String },
    #[error(
        "interface {iface} is of ARP hardware type {arp_type}, whose frames flowtap cannot read live \
         (it reads Ethernet, and the frames of devices without a link header: IP tunnels, WireGuard, tun, PPP)"
    )]
    LinkType { iface: String, arp_type: u16 },
    #[error(
        "host mode on {iface} needs an Ethernet interface (it has no link header: its frames are IP \
         packets); capture it with --mode span, which takes its traffic as it is"
    )]
    HostModeNeedsEthernet { iface: String },
    #[error(
        "{iface} queue {queue} already has an AF_XDP socket (another flowtap, or another capture tool, on this interface)"
    )]
    QueueBusy { iface: String, queue: u32 },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("the BPF object lacks {0}")]
    Missing(&'static str),
    #[error("XSKMAP entry for queue {queue}: {source}")]
    XskMap {
        queue: u32,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error(
        "AF_XDP socket on {iface} queue {queue}: {source} \
         (needs CAP_NET_RAW and CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK)"
    )]
    Socket {
        iface: String,
        queue: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    NetDev { what: String, detail: String },
    #[error(
        "making {iface} promiscuous: {source} (needs CAP_NET_RAW; --no-promiscuous leaves the interface as it is)"
    )]
    Promiscuous {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}
