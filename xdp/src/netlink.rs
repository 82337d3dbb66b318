//! The few rtnetlink requests host mode needs (create a veth pair, set a
//! link up, delete a link), built as bytes here and sent through
//! [`crate::sys::NetlinkSocket`]. Done in-process rather than through `ip`,
//! because a non-root flowtap holds its capabilities as file capabilities,
//! which a child process would not inherit.

use std::io;

use crate::sys::NetlinkSocket;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_AF_SPEC: u16 = 26;
const AF_INET6: u16 = 10;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const IFF_UP: u32 = 1;

/// Bytes of a netlink message under construction.
struct Message {
    buf: Vec<u8>,
    /// Offsets of open nested attributes, to patch their lengths.
    open: Vec<usize>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Message {
            buf,
            open: Vec::new(),
        }
    }

    /// struct ifinfomsg.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Self {
        self.buf.extend_from_slice(&[0, 0]); // family AF_UNSPEC, pad
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        let start = self.open.pop().expect("begin before end");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(&mut self) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        &self.buf
    }
}

/// Reads an acknowledgement from a response: `None` if the buffer holds no
/// NLMSG_ERROR message, else the kernel's verdict.
pub fn ack(buf: &[u8]) -> Option<io::Result<()>> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        if len < 16 || at + len > buf.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink reply",
            )));
        }
        if kind == NLMSG_ERROR && len >= 20 {
            let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().ok()?);
            return Some(if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-code))
            });
        }
        at += align4(len);
    }
    None
}

/// Creates a veth pair `name` <-> `peer`, each with `queues` rx/tx queues
/// and an MTU of `mtu`.
pub fn create_veth(name: &str, peer: &str, queues: u32, mtu: u32) -> io::Result<()> {
    let sock = NetlinkSocket::open()?;
    let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, 0, 0)
        .attr_str(IFLA_IFNAME, name)
        .attr_u32(IFLA_MTU, mtu)
        .attr_u32(IFLA_NUM_TX_QUEUES, queues)
        .attr_u32(IFLA_NUM_RX_QUEUES, queues)
        .begin(IFLA_LINKINFO)
        .attr_str(IFLA_INFO_KIND, "veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER)
        .ifinfo(0, 0, 0)
        .attr_str(IFLA_IFNAME, peer)
        .attr_u32(IFLA_MTU, mtu)
        .attr_u32(IFLA_NUM_TX_QUEUES, queues)
        .attr_u32(IFLA_NUM_RX_QUEUES, queues)
        .end()
        .end()
        .end();
    sock.request(m.finish())
}

/// Sets interface `index` up.
pub fn set_up(index: u32) -> io::Result<()> {
    let sock = NetlinkSocket::open()?;
    let mut m = Message::new(RTM_NEWLINK, 0);
    m.ifinfo(index as i32, IFF_UP, IFF_UP);
    sock.request(m.finish())
}

/// Sets the MTU of interface `index` (`ip link set DEV mtu MTU`).
pub fn set_mtu(index: u32, mtu: u32) -> io::Result<()> {
    let sock = NetlinkSocket::open()?;
    let mut m = Message::new(RTM_NEWLINK, 0);
    m.ifinfo(index as i32, 0, 0).attr_u32(IFLA_MTU, mtu);
    sock.request(m.finish())
}

/// Gives interface `index` no IPv6 address of its own (`ip link set DEV
/// addrgenmode none`), so that it sends nothing: no duplicate address
/// detection, router solicitation or multicast listener report. Through
/// netlink, because the sysctl `disable_ipv6` cannot be written in a
/// container (its /proc/sys is read-only) nor by a non-root flowtap. Before
/// the link is set up, when the address would be made.
pub fn without_ipv6_address(index: u32) -> io::Result<()> {
    let sock = NetlinkSocket::open()?;
    let mut m = Message::new(RTM_NEWLINK, 0);
    m.ifinfo(index as i32, 0, 0)
        .begin(IFLA_AF_SPEC)
        .begin(AF_INET6)
        .attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE])
        .end()
        .end();
    sock.request(m.finish())
}

/// Deletes interface `name` (a veth takes its peer with it).
pub fn delete_link(name: &str) -> io::Result<()> {
    let sock = NetlinkSocket::open()?;
    let mut m = Message::new(RTM_DELLINK, 0);
    m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
    sock.request(m.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_lengths() {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.ifinfo(0, 0, 0)
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let b = m.finish().to_vec();
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        // Header 16 + ifinfomsg 16, then the nested attribute: 4 + (4 + "veth\0" padded to 8).
        let nested_len = u16::from_ne_bytes(b[32..34].try_into().unwrap());
        assert_eq!(nested_len, 4 + 12);
        assert_eq!(b.len(), 32 + 16);
    }

    #[test]
    fn reads_acknowledgements() {
        let mut reply = vec![0u8; 36];
        reply[0..4].copy_from_slice(&36u32.to_ne_bytes());
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(ack(&reply).unwrap().is_ok());
        reply[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            ack(&reply).unwrap().unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert!(ack(&reply[..10]).is_none());
    }
}
