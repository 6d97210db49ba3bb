//! Process events from the Linux kernel's proc connector (`NETLINK_CONNECTOR`, `CN_IDX_PROC`):
//! one message for every `exec`, as it happens, so that a child an agent starts and that exits
//! 10 ms later is still seen. Polling `/proc` every few seconds would miss it.
//!
//! Why the proc connector and not audit: it needs no rules, leaves the system's audit
//! configuration alone, costs nothing when nobody listens, and has been in every kernel since
//! 2.6.15. It needs `CAP_NET_ADMIN` (root): without it [`EventSource::start`] fails and the
//! sensor falls back to polling alone, reporting the blind spot `process_partial`.
//!
//! The socket is `netlink-sys`'s (the rust-netlink project, which wraps the system calls); the
//! message parsing is [`parse_messages`] below: pure, bounded, tested on every prefix and fuzzed.
//! On each `exec` the listener thread reads the process and its parents from `/proc` right away
//! (see [`super::procfs`]) and hands an [`ExecEvent`] to the sensor through a bounded channel;
//! when the sensor falls behind, events are dropped and counted rather than queued without end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use super::procfs::{ProcInfo, Procfs};

/// `NETLINK_CONNECTOR` multicast group and ids of the process connector.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN` / `PROC_CN_MCAST_IGNORE`.
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
/// `NLMSG_DONE`: the connector sends (and wants) every message with this type.
const NLMSG_DONE: u16 = 3;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_NOOP`.
const NLMSG_NOOP: u16 = 1;
/// `struct nlmsghdr` and `struct cn_msg` sizes.
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;
/// `struct proc_event` header: what, cpu, timestamp_ns.
const PROC_EVENT_HDR: usize = 16;

/// The `what` of a `proc_event` this sensor uses.
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// Most events waiting for the sensor; beyond, new ones are dropped and counted.
const QUEUE: usize = 4096;
/// Most parents read for one event.
const MAX_CHAIN: usize = 16;

/// One process event from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A process forked: `child` is the new process (thread group) id.
    Fork {
        /// Parent thread group id.
        parent: u32,
        /// Child thread group id.
        child: u32,
    },
    /// A process called `exec`.
    Exec {
        /// Thread group id (the pid users see).
        pid: u32,
    },
    /// A process exited.
    Exit {
        /// Thread group id.
        pid: u32,
    },
    /// The subscription was acknowledged, or a message this sensor does not use.
    Other,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let slice = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(slice.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(slice.try_into().ok()?))
}

/// Parses one datagram of netlink messages from the proc connector into events. Truncated or
/// malformed messages end the parse (what was parsed before stays); nothing here panics.
pub fn parse_messages(datagram: &[u8]) -> Vec<ProcEvent> {
    let mut events = Vec::new();
    let mut at = 0usize;
    while let Some(header) = datagram.get(at..) {
        let Some(len) = u32_at(header, 0).and_then(|len| usize::try_from(len).ok()) else {
            break;
        };
        if len < NLMSG_HDR || len > header.len() {
            break;
        }
        let kind = u16_at(header, 4).unwrap_or(0);
        let Some(message) = header.get(NLMSG_HDR..len) else {
            break;
        };
        if kind == NLMSG_DONE
            && let Some(event) = parse_connector(message)
        {
            events.push(event);
        } else if kind != NLMSG_NOOP && kind != NLMSG_ERROR && kind != NLMSG_DONE {
            events.push(ProcEvent::Other);
        }
        // Messages are aligned to 4 bytes.
        let Some(next) = len.checked_add(3).map(|n| n & !3) else {
            break;
        };
        at = match at.checked_add(next) {
            Some(next_at) if next_at > at => next_at,
            _ => break,
        };
    }
    events
}

/// One `cn_msg` carrying a `proc_event`.
fn parse_connector(message: &[u8]) -> Option<ProcEvent> {
    let idx = u32_at(message, 0)?;
    let val = u32_at(message, 4)?;
    if idx != CN_IDX_PROC || val != CN_VAL_PROC {
        return Some(ProcEvent::Other);
    }
    let data_len = usize::from(u16_at(message, 16)?);
    let data = message.get(CN_MSG_HDR..CN_MSG_HDR.checked_add(data_len)?)?;
    let what = u32_at(data, 0)?;
    let body = data.get(PROC_EVENT_HDR..)?;
    Some(match what {
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent: u32_at(body, 4)?,
            child: u32_at(body, 12)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: u32_at(body, 4)?,
        },
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: u32_at(body, 4)?,
        },
        _ => ProcEvent::Other,
    })
}

/// The subscribe (or unsubscribe) request: `nlmsghdr` + `cn_msg` + the operation.
pub fn subscription(listen: bool, port: u32) -> Vec<u8> {
    let total = NLMSG_HDR + CN_MSG_HDR + 4;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_ne_bytes());
    message.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    message.extend_from_slice(&0u16.to_ne_bytes()); // flags
    message.extend_from_slice(&0u32.to_ne_bytes()); // seq
    message.extend_from_slice(&port.to_ne_bytes());
    message.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    message.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // ack
    message.extend_from_slice(&4u16.to_ne_bytes()); // len
    message.extend_from_slice(&0u16.to_ne_bytes()); // flags
    let op = if listen {
        PROC_CN_MCAST_LISTEN
    } else {
        PROC_CN_MCAST_IGNORE
    };
    message.extend_from_slice(&op.to_ne_bytes());
    message
}

/// An `exec` with the process and its parents as read from `/proc` the moment it was reported.
#[derive(Debug, Clone)]
pub struct ExecEvent {
    /// The process after `exec`.
    pub process: ProcInfo,
    /// Its parents, nearest first (at most 16).
    pub ancestors: Vec<ProcInfo>,
}

/// Counters of the listener thread.
#[derive(Debug, Default)]
pub struct EventStats {
    /// `exec` events received.
    pub execs: AtomicU64,
    /// Events dropped because the sensor fell behind.
    pub dropped: AtomicU64,
    /// Events whose process was gone before it could be read.
    pub vanished: AtomicU64,
    /// Receive buffer overruns reported by the kernel (`ENOBUFS`).
    pub overruns: AtomicU64,
}

/// A running proc connector listener.
pub struct EventSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<EventStats>,
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSource")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EventSource {
    /// Subscribes to process events and starts the listener thread. Fails without
    /// `CAP_NET_ADMIN`, or where the kernel has no proc connector.
    #[cfg(target_os = "linux")]
    pub fn start(procfs: Procfs) -> std::io::Result<(EventSource, Receiver<ExecEvent>)> {
        use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_CONNECTOR};

        let mut socket = Socket::new(NETLINK_CONNECTOR)?;
        socket.bind(&SocketAddr::new(0, CN_IDX_PROC))?;
        let mut bound = SocketAddr::new(0, 0);
        socket.get_address(&mut bound)?;
        let _ = socket.set_rx_buf_sz(4 * 1024 * 1024);
        let kernel = SocketAddr::new(0, 0);
        socket.send_to(&subscription(true, bound.port_number()), &kernel, 0)?;
        // A receive timeout lets the thread notice `stop`.
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(500)),
        )?;
        // Without the privilege, the kernel accepts the subscription silently and sends
        // nothing; ask for an event to be sure: a process this sensor starts itself.
        let (sender, receiver) = sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EventStats::default());
        verify(&socket)?;
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("process-events".into())
                .spawn(move || listen(&socket, &procfs, &sender, &stop, &stats))?
        };
        Ok((
            EventSource {
                stop,
                thread: Some(thread),
                stats,
            },
            receiver,
        ))
    }

    /// Process events are only implemented on Linux.
    #[cfg(not(target_os = "linux"))]
    pub fn start(_procfs: Procfs) -> std::io::Result<(EventSource, Receiver<ExecEvent>)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "process events are implemented on Linux only",
        ))
    }

    /// The listener's counters.
    pub fn stats(&self) -> &EventStats {
        &self.stats
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks that events really arrive: starts `true` (or this binary with `--version` when there
/// is no `true`) and waits for its `exec`. Unprivileged subscriptions get nothing.
#[cfg(target_os = "linux")]
fn verify(socket: &netlink_sys::Socket) -> std::io::Result<()> {
    let child = std::process::Command::new("/bin/true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        // Nothing to test with: trust the subscription.
        return Ok(());
    };
    let child_pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut seen = false;
    while std::time::Instant::now() < deadline && !seen {
        buffer.clear();
        match socket.recv(&mut buffer, 0) {
            Ok(_) => {
                seen = parse_messages(&buffer)
                    .iter()
                    .any(|event| matches!(event, ProcEvent::Exec { pid } | ProcEvent::Exit { pid } if *pid == child_pid));
            }
            Err(error) if is_timeout(&error) => {}
            Err(error) if error.raw_os_error() == Some(105) => {}
            Err(error) => {
                let _ = child.wait();
                return Err(error);
            }
        }
    }
    let _ = child.wait();
    if seen {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the proc connector sent no events (it needs CAP_NET_ADMIN)",
        ))
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(target_os = "linux")]
fn listen(
    socket: &netlink_sys::Socket,
    procfs: &Procfs,
    sender: &SyncSender<ExecEvent>,
    stop: &AtomicBool,
    stats: &EventStats,
) {
    let own = std::process::id();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut parents = std::collections::HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        buffer.clear();
        match socket.recv(&mut buffer, 0) {
            Ok(_) => {}
            Err(error) if is_timeout(&error) => continue,
            // ENOBUFS: the kernel dropped events because this thread was slow.
            Err(error) if error.raw_os_error() == Some(105) => {
                stats.overruns.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "process events: receive failed; polling only from now");
                return;
            }
        }
        for event in parse_messages(&buffer) {
            let ProcEvent::Exec { pid } = event else {
                continue;
            };
            if pid == own {
                continue;
            }
            // Its name and arguments changed: a cached copy as someone's parent is stale.
            parents.remove(&pid);
            stats.execs.fetch_add(1, Ordering::Relaxed);
            let Some(process) = procfs.read(pid) else {
                stats.vanished.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let ancestors = procfs.ancestors_cached(process.ppid, MAX_CHAIN, &mut parents);
            match sender.try_send(ExecEvent { process, ancestors }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
    let _ = socket.send_to(
        &subscription(false, 0),
        &netlink_sys::SocketAddr::new(0, 0),
        0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as the kernel sends it for one event.
    pub(crate) fn event_datagram(what: u32, body: &[u32]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&what.to_ne_bytes());
        data.extend_from_slice(&3u32.to_ne_bytes()); // cpu
        data.extend_from_slice(&123_456_789u64.to_ne_bytes());
        for word in body {
            data.extend_from_slice(&word.to_ne_bytes());
        }
        let total = NLMSG_HDR + CN_MSG_HDR + data.len();
        let mut message = Vec::new();
        message.extend_from_slice(&(total as u32).to_ne_bytes());
        message.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&7u32.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        message.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        message.extend_from_slice(&7u32.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&data);
        message
    }

    #[test]
    fn exec_fork_and_exit_events_parse() {
        let exec = event_datagram(PROC_EVENT_EXEC, &[4242, 4242]);
        assert_eq!(parse_messages(&exec), [ProcEvent::Exec { pid: 4242 }]);
        let fork = event_datagram(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        assert_eq!(
            parse_messages(&fork),
            [ProcEvent::Fork {
                parent: 10,
                child: 11
            }]
        );
        let exit = event_datagram(PROC_EVENT_EXIT, &[99, 99, 0, 17, 1, 1]);
        assert_eq!(parse_messages(&exit), [ProcEvent::Exit { pid: 99 }]);
        let mut two = exec.clone();
        two.extend_from_slice(&fork);
        assert_eq!(parse_messages(&two).len(), 2);
    }

    #[test]
    fn every_prefix_is_survived_and_never_invents_an_event() {
        let mut datagram = event_datagram(PROC_EVENT_EXEC, &[4242, 4242]);
        datagram.extend_from_slice(&event_datagram(PROC_EVENT_FORK, &[1, 1, 2, 2]));
        for end in 0..=datagram.len() {
            let events = parse_messages(&datagram[..end]);
            assert!(events.len() <= 2);
            for event in events {
                assert!(matches!(
                    event,
                    ProcEvent::Exec { pid: 4242 }
                        | ProcEvent::Fork {
                            parent: 1,
                            child: 2
                        }
                ));
            }
        }
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut exec = event_datagram(PROC_EVENT_EXEC, &[1, 1]);
        // A length beyond the datagram, and a zero length.
        exec[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_messages(&exec).is_empty());
        exec[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(parse_messages(&exec).is_empty());
        // A connector payload length beyond the message.
        let mut exec = event_datagram(PROC_EVENT_EXEC, &[1, 1]);
        exec[NLMSG_HDR + 16..NLMSG_HDR + 18].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(parse_messages(&exec).is_empty());
        for byte in 0..=255u8 {
            let _ = parse_messages(&[byte; 64]);
        }
    }

    #[test]
    fn subscriptions_are_well_formed() {
        let message = subscription(true, 77);
        assert_eq!(message.len(), 40);
        assert_eq!(u32_at(&message, 0), Some(40));
        assert_eq!(u32_at(&message, 36), Some(PROC_CN_MCAST_LISTEN));
        assert_eq!(
            u32_at(&subscription(false, 0), 36),
            Some(PROC_CN_MCAST_IGNORE)
        );
    }
}
