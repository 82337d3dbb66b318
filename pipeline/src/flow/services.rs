//! Well-known service ports: who is the server when no SYN decides.
//!
//! The port tiers (well-known < 1024 < registered < 32768 <= ephemeral)
//! get most traffic right, but not services on registered ports whose
//! clients use privileged source ports: an NFS client on port 1023 talking
//! to 2049 would look like a server on 1023. Where one side's port is in
//! this table and the other's is not, the listed port is the server's; in
//! every other case the tiers decide. The table is short on purpose: only
//! services whose port is reserved for them, whose clients send from a
//! different port, and that are common on the networks flowtap watches.
//! Ports that both sides use (DNS servers querying each other on 53, NTP
//! peers on 123, BGP, IKE, mDNS on 5353) are in it too; for them, as
//! before, the tiers and the first sender decide.

/// (port, service), sorted by port.
pub const SERVICE_PORTS: &[(u16, &str)] = &[
    (20, "ftp-data"),
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "dns"),
    (67, "dhcp"),
    (69, "tftp"),
    (80, "http"),
    (88, "kerberos"),
    (110, "pop3"),
    (111, "rpcbind"),
    (123, "ntp"),
    (137, "netbios-ns"),
    (138, "netbios-dgm"),
    (139, "netbios-ssn"),
    (143, "imap"),
    (161, "snmp"),
    (162, "snmp-trap"),
    (179, "bgp"),
    (389, "ldap"),
    (443, "https"),
    (445, "smb"),
    (464, "kpasswd"),
    (500, "ike"),
    (514, "syslog"),
    (547, "dhcpv6-server"),
    (587, "submission"),
    (636, "ldaps"),
    (853, "dns-over-tls"),
    (993, "imaps"),
    (995, "pop3s"),
    (1812, "radius"),
    (1813, "radius-acct"),
    (2049, "nfs"),
    (2379, "etcd"),
    (3268, "ldap-gc"),
    (3306, "mysql"),
    (3389, "rdp"),
    (4500, "ipsec-nat-t"),
    (4789, "vxlan"),
    (5060, "sip"),
    (5353, "mdns"),
    (5432, "postgresql"),
    (6379, "redis"),
    (6443, "kubernetes-api"),
    (6514, "syslog-tls"),
    (8080, "http-alt"),
    (9092, "kafka"),
    (10250, "kubelet"),
    (11211, "memcached"),
    (20048, "mountd"),
    (27017, "mongodb"),
    (51820, "wireguard"),
];

/// Whether `port` is a listed service port.
pub fn is_service_port(port: u16) -> bool {
    SERVICE_PORTS
        .binary_search_by_key(&port, |&(p, _)| p)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_found() {
        assert!(SERVICE_PORTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(is_service_port(2049) && is_service_port(53) && is_service_port(27017));
        assert!(!is_service_port(1023) && !is_service_port(40000));
    }
}
