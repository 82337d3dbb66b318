//! Getting messages to a collector: over UDP (templates repeated, as RFC
//! 7011 asks when the collector may have missed them or restarted), or
//! over TCP (templates once per connection; a bounded buffer of messages
//! while the collector is away, reconnecting after a wait that doubles
//! while it stays away; what does not fit is dropped and counted).

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::exporter::ExportStats;
use crate::message::{sequence_of, set_export_time, set_sequence};
use pipeline::time::AtMostEvery;

/// Where a collector is, and how to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectorAddr {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl std::fmt::Display for CollectorAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollectorAddr::Udp(to) => write!(f, "udp://{to}"),
            CollectorAddr::Tcp(to) => write!(f, "tcp://{to}"),
        }
    }
}

/// A collector's failures as the log says them: the first at once, then
/// what was lost meanwhile at most once every [`SAY_TROUBLE_EVERY`], and
/// its recovery. Each failure is a debug line of its own and is counted in
/// the metrics (`flowtap_ipfix_send_errors_total`,
/// `flowtap_ipfix_records_lost_total`); this is what someone reading the
/// journal must see: that the export does not reach its collector.
#[derive(Debug)]
pub struct Trouble {
    failing: bool,
    said: AtMostEvery,
    errors_unsaid: u64,
    lost_unsaid: u64,
}

impl Default for Trouble {
    fn default() -> Trouble {
        Trouble {
            failing: false,
            said: AtMostEvery::new(SAY_TROUBLE_EVERY),
            errors_unsaid: 0,
            lost_unsaid: 0,
        }
    }
}

/// How often a collector that goes on failing is said again.
pub const SAY_TROUBLE_EVERY: Duration = Duration::from_secs(60);

impl Trouble {
    /// After a delivery to `to` that failed `errors` times and lost `lost`
    /// records; `reachable`: it went through (a TCP collector is
    /// connected: one waiting for its next try is not). `closing`: flowtap
    /// stops, so what is left unsaid is said now.
    pub fn after(
        &mut self,
        to: CollectorAddr,
        errors: u64,
        lost: u64,
        reachable: bool,
        closing: bool,
    ) {
        if errors == 0 && lost == 0 {
            if self.failing && reachable && !closing {
                // What failed since it was last said, then the recovery.
                self.say(to);
                tracing::info!(collector = %to, "IPFIX collector takes records again");
                *self = Trouble::default();
            }
            if closing {
                self.say(to);
            }
            return;
        }
        self.failing = true;
        self.errors_unsaid += errors;
        self.lost_unsaid += lost;
        if closing || self.said.due() {
            self.say(to);
        }
    }

    fn say(&mut self, to: CollectorAddr) {
        if self.errors_unsaid == 0 && self.lost_unsaid == 0 {
            return;
        }
        tracing::warn!(
            collector = %to,
            send_errors = self.errors_unsaid,
            records_lost = self.lost_unsaid,
            "IPFIX export fails: the collector is unreachable, refuses, or reads too slowly for \
             --ipfix-tcp-buffer (debug logs name each error; flowtap_ipfix_records_lost_total \
             counts what is lost)"
        );
        self.errors_unsaid = 0;
        self.lost_unsaid = 0;
    }
}

/// UDP templates are sent again after this many messages too (and after
/// the configured time, RFC 7011 section 8.4's templateRefreshTimeout).
const TEMPLATE_REFRESH_MESSAGES: u32 = 1000;

/// Whether a UDP collector's templates, sent `since` ago, go again with a
/// batch `batches_apart` after the last: with the batch nearest the
/// refresh ([`crate::due_at_nearest`]; a whole batch late, a collector
/// that restarted lost that much more).
fn templates_due(since: Duration, batches_apart: Option<Duration>, refresh: Duration) -> bool {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    crate::due_at_nearest(ns(since), batches_apart.map_or(0, ns), ns(refresh))
}
/// A TCP collector that is away is tried again after this long, twice as
/// long after each failed try, up to [`RECONNECT_AT_MOST`]: a collector
/// whose address drops packets holds the exporter for the connect timeout
/// at each try (it runs where snapshots are published).
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_AT_MOST: Duration = Duration::from_secs(8);
/// How long connecting and writing to a TCP collector may block the
/// exporter (it runs where snapshots are published). A write that takes
/// longer leaves the rest of its message for the next flush, on the same
/// connection: a collector slow to read is not one that is gone.
const TCP_TIMEOUT: Duration = Duration::from_millis(500);

/// A TCP collector that took nothing for a whole write is not written to
/// again for this long (its messages wait in the buffer): a collector that
/// stopped reading held the exporter 500 ms each batch, and a capture's
/// end, hundreds of batches, for minutes.
const UNREAD_WAIT: Duration = Duration::from_secs(1);
/// Taking fewer bytes than this in a whole write is taking nothing.
const TAKES_AT_LEAST: usize = 16 << 10;
/// ... and its connection is given up once it has taken nothing for this
/// long (its messages still queued go again, whole, on the next; what the
/// kernel had accepted for it is lost, the collector seeing the gap in the
/// sequence numbers).
const UNREAD_GIVE_UP: Duration = Duration::from_secs(60);

/// How long flowtap, stopping, goes on writing to its TCP collectors that
/// read, all of them together: within a pod's grace period (the shipped
/// DaemonSet's is 20 s, and the last snapshot may take 10 s before it).
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(8);
/// ... and how long it waits for one that has stopped reading.
const CLOSE_STALLED: Duration = Duration::from_secs(5);

/// A message, and the data records it carries (0 for templates).
pub type Message = (Vec<u8>, u32);

pub enum Collector {
    Udp {
        socket: UdpSocket,
        to: SocketAddr,
        templates_sent: Option<Instant>,
        since_templates: u32,
        /// Templates are sent again this often.
        template_refresh: Duration,
        /// When the last batch was delivered.
        last_delivery: Option<Instant>,
    },
    Tcp {
        to: SocketAddr,
        stream: Option<TcpStream>,
        last_attempt: Option<Instant>,
        /// How long after `last_attempt` to try again.
        retry_after: Duration,
        /// Messages not yet written, oldest first, and their bytes.
        queue: VecDeque<Message>,
        queued_bytes: usize,
        /// Bytes of the queue's first message written on this connection
        /// (a write that timed out midway goes on from there).
        front_written: usize,
        /// Since when the collector has taken nothing of what was written
        /// ([`UNREAD_GIVE_UP`]), and when to write to it again
        /// ([`UNREAD_WAIT`]).
        unread_since: Option<Instant>,
        write_after: Option<Instant>,
        max_bytes: usize,
    },
}

impl Collector {
    /// Whether what is sent reaches it now, as far as flowtap can know: a
    /// TCP collector is connected (a UDP one always seems to be).
    pub fn reachable(&self) -> bool {
        match self {
            Collector::Udp { .. } => true,
            Collector::Tcp { stream, .. } => stream.is_some(),
        }
    }

    /// Bytes queued for a TCP collector and not written yet.
    fn unwritten(&self) -> usize {
        match self {
            Collector::Udp { .. } => 0,
            Collector::Tcp {
                queued_bytes,
                front_written,
                ..
            } => queued_bytes - front_written,
        }
    }

    /// Where it is.
    pub fn addr(&self) -> CollectorAddr {
        match self {
            Collector::Udp { to, .. } => CollectorAddr::Udp(*to),
            Collector::Tcp { to, .. } => CollectorAddr::Tcp(*to),
        }
    }

    pub fn open(
        addr: CollectorAddr,
        tcp_buffer_bytes: usize,
        template_refresh: Duration,
    ) -> std::io::Result<Collector> {
        Ok(match addr {
            CollectorAddr::Udp(to) => {
                // Unconnected: a connected UDP socket fails its next send
                // after an ICMP error, as while a collector restarts.
                let bind = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
                Collector::Udp {
                    socket: UdpSocket::bind(bind)?,
                    to,
                    templates_sent: None,
                    since_templates: 0,
                    template_refresh,
                    last_delivery: None,
                }
            }
            CollectorAddr::Tcp(to) => Collector::Tcp {
                to,
                stream: None,
                last_attempt: None,
                retry_after: RECONNECT_FIRST,
                queue: VecDeque::new(),
                queued_bytes: 0,
                front_written: 0,
                unread_since: None,
                write_after: None,
                max_bytes: tcp_buffer_bytes,
            },
        })
    }

    /// Sends `data` (with `templates` first where this transport needs
    /// them now); counts what is lost.
    pub fn deliver(&mut self, templates: &[u8], data: &[Message], stats: &ExportStats) {
        match self {
            Collector::Udp {
                socket,
                to,
                templates_sent,
                since_templates,
                template_refresh,
                last_delivery,
            } => {
                let now = Instant::now();
                let batches_apart = last_delivery.replace(now).map(|l| now - l);
                let refresh = templates_sent
                    .is_none_or(|t| templates_due(now - t, batches_apart, *template_refresh))
                    || *since_templates >= TEMPLATE_REFRESH_MESSAGES;
                if refresh {
                    match socket.send_to(templates, *to) {
                        Ok(_) => {
                            *templates_sent = Some(now);
                            *since_templates = 0;
                        }
                        Err(e) => {
                            stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(collector = %to, error = %e, "IPFIX templates not sent");
                        }
                    }
                }
                for (m, n) in data {
                    if let Err(e) = socket.send_to(m, *to) {
                        stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        lost(stats, *n);
                        tracing::debug!(collector = %to, error = %e, "IPFIX message not sent");
                    }
                    *since_templates += 1;
                }
            }
            Collector::Tcp {
                queue,
                queued_bytes,
                max_bytes,
                ..
            } => {
                for (m, n) in data {
                    if *queued_bytes + m.len() > *max_bytes {
                        lost(stats, *n);
                        continue;
                    }
                    *queued_bytes += m.len();
                    queue.push_back((m.clone(), *n));
                }
                self.flush(templates, stats);
            }
        }
    }

    /// TCP: writes what is queued, connecting first if need be (templates
    /// lead every connection). A message is dropped from the queue only
    /// once written whole.
    fn flush(&mut self, templates: &[u8], stats: &ExportStats) {
        let Collector::Tcp {
            to,
            stream,
            last_attempt,
            retry_after,
            queue,
            queued_bytes,
            front_written,
            unread_since,
            write_after,
            ..
        } = self
        else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        // A collector that closed its end (it stopped, or restarted) is
        // seen before writing: the kernel would take the next message and
        // lose it. Collectors send nothing over an IPFIX connection, so a
        // readable end of file is the only thing to read.
        if stream.as_ref().is_some_and(closed_by_peer) {
            *stream = None;
        }
        if stream.is_none() {
            // What was written of the first message went with the old
            // connection: it goes again whole.
            *front_written = 0;
            (*unread_since, *write_after) = (None, None);
            if last_attempt.is_some_and(|t| t.elapsed() < *retry_after) {
                return;
            }
            *last_attempt = Some(Instant::now());
            // The templates lead with the sequence number of the data
            // that follows them (the oldest message kept), not the
            // newest: a collector checks the numbers for gaps.
            let mut leading = templates.to_vec();
            if let Some((first, _)) = queue.front() {
                set_sequence(&mut leading, sequence_of(first));
            }
            set_export_time(&mut leading, now_s());
            let connected = TcpStream::connect_timeout(to, TCP_TIMEOUT).and_then(|mut s| {
                s.set_write_timeout(Some(TCP_TIMEOUT))?;
                s.set_nodelay(true)?;
                s.write_all(&leading)?;
                Ok(s)
            });
            match connected {
                Ok(s) => {
                    stats.tcp_connects.fetch_add(1, Ordering::Relaxed);
                    *stream = Some(s);
                    *retry_after = RECONNECT_FIRST;
                }
                Err(e) => {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(collector = %to, error = %e, "IPFIX collector unreachable");
                    *retry_after = (*retry_after * 2).min(RECONNECT_AT_MOST);
                    return;
                }
            }
        }
        if write_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let s = stream.as_mut().expect("connected above");
        let now = now_s();
        let deadline = Instant::now() + TCP_TIMEOUT;
        // Bytes the collector took in this flush: fewer than
        // [`TAKES_AT_LEAST`] in a whole write's time is a collector that
        // does not read (a kernel whose buffer is full may still take a
        // few hundred bytes now and then).
        let mut taken = 0;
        while let Some((m, _)) = queue.front_mut() {
            if *front_written == 0 {
                set_export_time(m, now);
            }
            // Each write within what is left of TCP_TIMEOUT: the socket's
            // timeout is a write's, and one begun late ran past it.
            let left = deadline.saturating_duration_since(Instant::now());
            let written = match s.set_write_timeout(Some(left.max(Duration::from_millis(1)))) {
                Ok(()) => s.write(&m[*front_written..]),
                Err(e) => Err(e),
            };
            let written = match written {
                Ok(0) => Err(std::io::Error::from(ErrorKind::WriteZero)),
                other => other,
            };
            match written {
                Ok(n) => {
                    *front_written += n;
                    taken += n;
                }
                // Not read for TCP_TIMEOUT: the rest goes at a later flush
                // (cutting the connection left the collector half a message).
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The collector went away: the message goes again, whole,
                    // after the templates of the next connection.
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(collector = %to, error = %e, "IPFIX connection lost");
                    *stream = None;
                    *front_written = 0;
                    return;
                }
            }
            if *front_written == m.len() {
                *front_written = 0;
                *queued_bytes -= m.len();
                queue.pop_front();
            }
            if Instant::now() >= deadline {
                // A collector reading slowly takes the rest at a later
                // flush: the exporter is held TCP_TIMEOUT at most.
                break;
            }
        }
        if queue.is_empty() || taken >= TAKES_AT_LEAST {
            (*unread_since, *write_after) = (None, None);
            return;
        }
        // It took (next to) nothing for a whole write: waited for, then
        // given up.
        let since = *unread_since.get_or_insert_with(Instant::now);
        if since.elapsed() < UNREAD_GIVE_UP {
            *write_after = Some(Instant::now() + UNREAD_WAIT);
            return;
        }
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(collector = %to, "IPFIX collector reads nothing: connection given up");
        *stream = None;
        *front_written = 0;
    }

    /// Flowtap stops: one last try, written to for as long as the
    /// collector reads (a capture's records go at its end, all at once),
    /// until `give_up` ([`CLOSE_WITHIN`] for all collectors); what is still
    /// queued then is lost.
    pub fn close(&mut self, templates: &[u8], stats: &ExportStats, give_up: Instant) {
        if let Collector::Tcp { last_attempt, .. } = self {
            *last_attempt = None;
        }
        let mut progress = Instant::now();
        loop {
            if let Collector::Tcp { write_after, .. } = self {
                // Tried however it went before: this is the last chance.
                *write_after = None;
            }
            let before = self.unwritten();
            self.flush(templates, stats);
            let after = self.unwritten();
            if after < before {
                progress = Instant::now();
            }
            let stalled = progress.elapsed() >= CLOSE_STALLED;
            if after == 0 || stalled || Instant::now() >= give_up || !self.reachable() {
                break;
            }
        }
        if let Collector::Tcp {
            queue,
            queued_bytes,
            front_written,
            ..
        } = self
        {
            for (_, n) in queue.drain(..) {
                lost(stats, n);
            }
            (*queued_bytes, *front_written) = (0, 0);
        }
    }
}

/// Whether the peer closed `s` (its end of file is readable).
fn closed_by_peer(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = !matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    closed || s.set_nonblocking(false).is_err()
}

/// The wall clock in seconds since the epoch, as export times are.
pub(crate) fn now_s() -> u32 {
    (pipeline::time::wall_now_ns() / 1_000_000_000) as u32
}

fn lost(stats: &ExportStats, records: u32) {
    stats
        .records_lost
        .fetch_add(u64::from(records), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many datagrams of templates `deliver`ing three data messages,
    /// one at a time, sends to a UDP collector refreshing every `refresh`.
    fn templates_sent(refresh: Duration) -> usize {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let to = CollectorAddr::Udp(collector.local_addr().unwrap());
        let mut c = Collector::open(to, 0, refresh).unwrap();
        let stats = ExportStats::default();
        let templates = b"templates".to_vec();
        for _ in 0..3 {
            c.deliver(&templates, &[(b"data".to_vec(), 1)], &stats);
        }
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(n) = collector.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got.iter().filter(|d| d.as_slice() == b"data").count(), 3);
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
        got.iter().filter(|d| d.as_slice() == b"templates").count()
    }

    /// A TCP collector that stays away is tried again after a wait that
    /// doubles, up to 8 s (an address that drops packets holds the
    /// exporter for the connect timeout at each try), and after 1 s again
    /// once it answered.
    #[test]
    fn an_absent_tcp_collector_is_tried_less_and_less_often() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        drop(listener);
        let mut c = Collector::open(CollectorAddr::Tcp(to), 1 << 20, Duration::ZERO).unwrap();
        let stats = ExportStats::default();
        let header = vec![0u8; 16];
        let retry_after = |c: &Collector| match c {
            Collector::Tcp { retry_after, .. } => *retry_after,
            Collector::Udp { .. } => unreachable!(),
        };
        let waited = |c: &mut Collector| {
            if let Collector::Tcp { last_attempt, .. } = c {
                *last_attempt = Instant::now().checked_sub(Duration::from_secs(60));
            }
        };
        c.deliver(&header, &[(header.clone(), 1)], &stats);
        assert_eq!(retry_after(&c), Duration::from_secs(2));
        // Not tried again before the wait is over.
        c.deliver(&header, &[(header.clone(), 1)], &stats);
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 1);
        for expected in [4, 8, 8] {
            waited(&mut c);
            c.deliver(&header, &[(header.clone(), 1)], &stats);
            assert_eq!(retry_after(&c), Duration::from_secs(expected));
        }
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 4);
        // Back: connected, and the wait starts over.
        let _listener = std::net::TcpListener::bind(to).unwrap();
        waited(&mut c);
        c.deliver(&header, &[(header.clone(), 1)], &stats);
        assert_eq!(stats.tcp_connects.load(Ordering::Relaxed), 1);
        assert_eq!(retry_after(&c), RECONNECT_FIRST);
    }

    /// A TCP collector that does not read for longer than a write may take
    /// (a busy collector) gets every message whole, on the one connection,
    /// once it reads. (The exporter cut the connection at the write's
    /// timeout: the collector was left half a message, and a reconnection.)
    #[test]
    fn a_tcp_collector_slow_to_read_gets_every_message_whole() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A small receive buffer (the connection takes it), so that the
        // messages below are more than the kernel holds for it.
        rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 64 << 10).unwrap();
        let to = listener.local_addr().unwrap();
        let collector = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            std::thread::sleep(TCP_TIMEOUT * 3);
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        // More than the sockets' buffers hold (28 MB), each message its
        // own bytes.
        let message = |i: u32| -> Vec<u8> { i.to_be_bytes().repeat(350) };
        let messages: Vec<Message> = (0..20_000).map(|i| (message(i), 1)).collect();
        let templates = vec![7u8; 32];
        let mut c = Collector::open(CollectorAddr::Tcp(to), 64 << 20, Duration::ZERO).unwrap();
        let stats = ExportStats::default();
        c.deliver(&templates, &messages, &stats);
        let queued = |c: &Collector| match c {
            Collector::Tcp { queue, .. } => queue.len(),
            Collector::Udp { .. } => unreachable!(),
        };
        assert!(
            queued(&c) > 0,
            "the exporter waited for the collector to read"
        );
        for _ in 0..1_000 {
            if queued(&c) == 0 {
                break;
            }
            c.deliver(&templates, &[], &stats);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(queued(&c), 0);
        drop(c);
        let got = collector.join().unwrap();
        assert_eq!(stats.tcp_connects.load(Ordering::Relaxed), 1);
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
        assert_eq!(stats.records_lost.load(Ordering::Relaxed), 0);
        assert_eq!(got.len(), templates.len() + 20_000 * 1400);
        let (leading, data) = got.split_at(templates.len());
        assert_eq!(&leading[..4], &templates[..4]);
        for (i, m) in data.chunks(1400).enumerate() {
            // Bytes 4 to 8 are the export time, set as it is written.
            let sent = message(i as u32);
            assert_eq!((&m[..4], &m[8..]), (&sent[..4], &sent[8..]), "message {i}");
        }
    }

    /// A TCP collector that accepts and reads nothing holds the exporter
    /// one write's timeout, then not again for a second, however many
    /// batches come meanwhile (each held it 500 ms: a capture's end, of
    /// hundreds of batches, took minutes), on the one connection.
    #[test]
    fn a_tcp_collector_that_reads_nothing_holds_the_exporter_briefly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 64 << 10).unwrap();
        let to = listener.local_addr().unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let collector = std::thread::spawn(move || {
            let (_conn, _) = listener.accept().unwrap();
            let _ = wait.recv();
        });
        let batch: Vec<Message> = (0..1_000).map(|_| (vec![0u8; 1400], 1)).collect();
        let mut c = Collector::open(CollectorAddr::Tcp(to), 64 << 20, Duration::ZERO).unwrap();
        let stats = ExportStats::default();
        let started = Instant::now();
        for _ in 0..20 {
            c.deliver(&[0u8; 32], &batch, &stats);
        }
        let held = started.elapsed();
        assert!(held < TCP_TIMEOUT * 8, "held {held:?} for 20 batches");
        assert_eq!(stats.tcp_connects.load(Ordering::Relaxed), 1);
        assert_eq!(stats.records_lost.load(Ordering::Relaxed), 0);
        assert!(c.reachable());
        drop(done);
        collector.join().unwrap();
    }

    /// `--ipfix-template-refresh`: templates go again once it has passed,
    /// and not before.
    #[test]
    fn udp_templates_are_sent_again_as_configured() {
        assert_eq!(templates_sent(Duration::ZERO), 3);
        assert_eq!(templates_sent(Duration::from_secs(3600)), 1);
        // With the batch nearest the refresh: batches a second apart, the
        // tenth a hair short of 10 s sends them, the ninth does not.
        let s = Duration::from_secs;
        let second = Some(s(1));
        assert!(templates_due(
            s(10) - Duration::from_micros(5),
            second,
            s(10)
        ));
        assert!(!templates_due(s(9), second, s(10)));
        // Batches far apart: a hundredth of the refresh early at most.
        assert!(!templates_due(s(9), Some(s(9)), s(10)));
        assert!(templates_due(
            s(10) - Duration::from_millis(100),
            Some(s(9)),
            s(10)
        ));
        assert!(!templates_due(
            s(10) - Duration::from_micros(5),
            None,
            s(10)
        ));
    }
}
