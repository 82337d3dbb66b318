//! XDP program and AF_XDP sockets for live capture
