//! Live capture (Linux): one `AF_PACKET` socket per interface, filtered in the kernel.
//!
//! Each socket is created here with socket2 with protocol 0 (so it receives nothing yet), gets
//! the classic BPF program of [`super::filter`] attached, and is then handed to pnet
//! (`pnet_datalink::Config::socket_fd`), which binds it to the interface with `ETH_P_ALL`.
//! No frame is ever read unfiltered, and promiscuous mode stays off.
//!
//! One thread per interface reads frames and hands owned copies to the detector over a bounded
//! channel; when the channel is full the frame is counted in `overflow` and dropped: capture never
//! blocks. A watcher re-lists interfaces every few seconds, starts capture on new ones (VPN
//! tunnels come and go) and stops it on interfaces that went away or down.

#[cfg(target_os = "linux")]
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
#[cfg(target_os = "linux")]
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use shadowai_wire::LinkType;
#[cfg(target_os = "linux")]
use tracing::{debug, info, warn};

#[cfg(target_os = "linux")]
use super::filter;
use super::filter::Framing;

/// A frame as captured, owned, for the detector thread.
#[derive(Debug)]
pub struct Frame {
    /// How the frame begins.
    pub link: LinkType,
    /// Capture time, Unix ms.
    pub ts_ms: i64,
    /// The bytes (at most [`filter::SNAP_LEN`]).
    pub data: Vec<u8>,
}

/// Capture counters, shared with the threads.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Frames the kernel filter passed and we read.
    pub frames: AtomicU64,
    /// Frames dropped because the detector's channel was full.
    pub overflow: AtomicU64,
    /// Read errors.
    pub errors: AtomicU64,
}

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Opening a packet socket was refused: the process lacks `CAP_NET_RAW`.
    #[error(
        "packet capture needs CAP_NET_RAW: run as root, or grant it once with `sudo setcap cap_net_raw,cap_net_admin+ep $(which shadowai-agent)`"
    )]
    NoPrivilege,
    /// This platform has no live capture yet.
    #[error("live capture is only implemented on Linux")]
    Unsupported,
    /// Another error opening a packet socket.
    #[error("cannot open a packet socket: {0}")]
    Socket(io::Error),
}

/// The command that grants the capture privilege, for blind-spot messages.
pub const FIX_PRIVILEGE: &str = "sudo setcap cap_net_raw,cap_net_admin+ep $(which shadowai-agent)";

/// Checks that packet sockets can be opened (the privilege check done before anything starts).
pub fn check_privilege() -> Result<(), CaptureError> {
    #[cfg(not(target_os = "linux"))]
    return Err(CaptureError::Unsupported);
    #[cfg(target_os = "linux")]
    match new_packet_socket() {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(CaptureError::NoPrivilege)
        }
        Err(error) => Err(CaptureError::Socket(error)),
    }
}

#[cfg(target_os = "linux")]
fn new_packet_socket() -> io::Result<socket2::Socket> {
    // Protocol 0: the socket receives nothing until pnet binds it with ETH_P_ALL, by which time
    // the filter is attached.
    socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(0)),
    )
}

/// How an interface's frames begin, from its ARPHRD type; `None` for types not captured.
pub fn framing_of(arphrd: u32) -> Option<(Framing, LinkType)> {
    match arphrd {
        // ETHER, LOOPBACK (which carries a zeroed Ethernet header)
        1 | 772 => Some((Framing::Ethernet, LinkType::Ethernet)),
        // PPP, TUNNEL (ipip), TUNNEL6, SIT, IPGRE, NONE (tun, WireGuard), VOID
        512 | 768 | 769 | 776 | 778 | 0xfffe | 0xffff => Some((Framing::RawIp, LinkType::RawIp)),
        _ => None,
    }
}

/// An interface to capture on.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    name: String,
    index: u32,
    arphrd: u32,
}

#[cfg(target_os = "linux")]
fn list_up_interfaces(selected: &[String]) -> Vec<Candidate> {
    pnet_datalink::interfaces()
        .into_iter()
        .filter(|i| i.is_up())
        .filter(|i| selected.is_empty() || selected.contains(&i.name))
        .filter_map(|i| {
            // Interface names never hold `/`; refuse one that does rather than build a path.
            if i.name.contains('/') || i.name.is_empty() {
                return None;
            }
            let arphrd = std::fs::read_to_string(format!("/sys/class/net/{}/type", i.name))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(Candidate {
                name: i.name,
                index: i.index,
                arphrd,
            })
        })
        .collect()
}

/// Names of the interfaces that are up now (for `--interface` validation and messages).
pub fn up_interface_names() -> Vec<String> {
    #[cfg(not(target_os = "linux"))]
    return Vec::new();
    #[cfg(target_os = "linux")]
    list_up_interfaces(&[])
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[cfg(target_os = "linux")]
struct Running {
    index: u32,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Live capture on every selected interface that is up, re-listed every few seconds.
pub struct Capture {
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    counters: Arc<CaptureCounters>,
    active: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("interfaces", &self.interfaces())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Starts capturing; `selected` empty means every interface. Frames go to `frames`.
    pub fn start(
        selected: Vec<String>,
        frames: SyncSender<Frame>,
        relist: Duration,
    ) -> Result<Capture, CaptureError> {
        check_privilege()?;
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (selected, frames, relist);
            Err(CaptureError::Unsupported)
        }
        #[cfg(target_os = "linux")]
        Self::start_watcher(selected, frames, relist)
    }

    #[cfg(target_os = "linux")]
    fn start_watcher(
        selected: Vec<String>,
        frames: SyncSender<Frame>,
        relist: Duration,
    ) -> Result<Capture, CaptureError> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        let active = Arc::new(Mutex::new(Vec::new()));
        let watcher = {
            let stop = stop.clone();
            let counters = counters.clone();
            let active = active.clone();
            std::thread::Builder::new()
                .name("net-watch".into())
                .spawn(move || watch(&selected, &frames, relist, &stop, &counters, &active))
                .map_err(CaptureError::Socket)?
        };
        Ok(Capture {
            stop,
            watcher: Some(watcher),
            counters,
            active,
        })
    }

    /// Counters.
    pub fn counters(&self) -> &CaptureCounters {
        &self.counters
    }

    /// Interfaces being captured now.
    pub fn interfaces(&self) -> Vec<String> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops every capture thread and waits for them (at most one read timeout).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(target_os = "linux")]
fn watch(
    selected: &[String],
    frames: &SyncSender<Frame>,
    relist: Duration,
    stop: &AtomicBool,
    counters: &Arc<CaptureCounters>,
    active: &Mutex<Vec<String>>,
) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let up = list_up_interfaces(selected);
        // Stop threads of interfaces that went away, went down or were replaced (new index).
        running.retain(|name, thread| {
            let keep = up
                .iter()
                .any(|c| c.name == *name && c.index == thread.index)
                && !thread.thread.is_finished();
            if !keep {
                thread.stop.store(true, Ordering::Relaxed);
                debug!(interface = %name, "capture stopped");
            }
            keep
        });
        for candidate in up {
            if running.contains_key(&candidate.name) {
                continue;
            }
            let Some((framing, link)) = framing_of(candidate.arphrd) else {
                continue;
            };
            let is_loopback = candidate.arphrd == 772;
            match open(&candidate, framing, is_loopback) {
                Ok(receiver) => {
                    let thread_stop = Arc::new(AtomicBool::new(false));
                    let spawned = {
                        let thread_stop = thread_stop.clone();
                        let frames = frames.clone();
                        let counters = counters.clone();
                        std::thread::Builder::new()
                            .name(format!("net-{}", candidate.name))
                            .spawn(move || {
                                read_loop(receiver, link, &frames, &thread_stop, &counters)
                            })
                    };
                    match spawned {
                        Ok(thread) => {
                            info!(interface = %candidate.name, "capture started");
                            running.insert(
                                candidate.name.clone(),
                                Running {
                                    index: candidate.index,
                                    stop: thread_stop,
                                    thread,
                                },
                            );
                        }
                        Err(error) => warn!(error = %error, "cannot start a capture thread"),
                    }
                }
                Err(error) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(interface = %candidate.name, error = %error, "cannot capture on interface");
                }
            }
        }
        *active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = running.keys().cloned().collect();
        // Sleep in small steps so that stop is prompt.
        let mut slept = Duration::ZERO;
        while slept < relist && !stop.load(Ordering::Relaxed) {
            pause(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
    for (_, thread) in std::mem::take(&mut running) {
        thread.stop.store(true, Ordering::Relaxed);
        let _ = thread.thread.join();
    }
    active
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// Opens a filtered packet socket bound to `candidate`.
#[cfg(target_os = "linux")]
fn open(
    candidate: &Candidate,
    framing: Framing,
    is_loopback: bool,
) -> io::Result<Box<dyn pnet_datalink::DataLinkReceiver>> {
    use std::os::fd::IntoRawFd as _;
    let socket = new_packet_socket()?;
    let program = filter::program(framing, is_loopback);
    socket.attach_filter(&filter::to_sock_filters(&program))?;
    // Room for bursts while the detector thread is busy (the kernel caps it at rmem_max
    // unless CAP_NET_ADMIN allows more).
    let _ = socket.set_recv_buffer_size(4 << 20);
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == candidate.name && i.index == candidate.index)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "interface went away"))?;
    let config = pnet_datalink::Config {
        read_buffer_size: filter::SNAP_LEN as usize,
        write_buffer_size: 64,
        read_timeout: Some(Duration::from_millis(200)),
        promiscuous: false,
        // pnet binds the socket to the interface, sets it non-blocking and owns (closes) it.
        socket_fd: Some(socket.into_raw_fd()),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&interface, config)? {
        pnet_datalink::Channel::Ethernet(_sender, receiver) => Ok(receiver),
        _ => Err(io::Error::other("unexpected channel type")),
    }
}

#[cfg(target_os = "linux")]
fn read_loop(
    mut receiver: Box<dyn pnet_datalink::DataLinkReceiver>,
    link: LinkType,
    frames: &SyncSender<Frame>,
    stop: &AtomicBool,
    counters: &CaptureCounters,
) {
    let mut consecutive_errors = 0u32;
    while !stop.load(Ordering::Relaxed) {
        match receiver.next() {
            Ok(data) => {
                consecutive_errors = 0;
                counters.frames.fetch_add(1, Ordering::Relaxed);
                let frame = Frame {
                    link,
                    ts_ms: super::now_ms(),
                    data: data.to_vec(),
                };
                match frames.try_send(frame) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        counters.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                consecutive_errors += 1;
                // The interface went away (ENETDOWN, ENXIO): the watcher restarts it if it returns.
                if consecutive_errors > 20 {
                    debug!(error = %error, "capture thread giving up");
                    return;
                }
                pause(Duration::from_millis(50));
            }
        }
    }
}

/// Sleeps a capture thread: these are dedicated OS threads, never a tokio runtime's.
#[allow(
    clippy::disallowed_methods,
    reason = "capture and watcher threads are plain OS threads, not runtime threads"
)]
pub(crate) fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_by_interface_type() {
        assert_eq!(framing_of(1).map(|f| f.0), Some(Framing::Ethernet));
        assert_eq!(framing_of(772).map(|f| f.1), Some(LinkType::Ethernet));
        assert_eq!(framing_of(0xfffe).map(|f| f.1), Some(LinkType::RawIp));
        assert_eq!(framing_of(803), None); // radiotap
    }

    /// Deletes the test's veth pair (both ends) even when an assertion fails.
    struct Link(String);

    impl Drop for Link {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
    }

    fn wait_for(capture: &Capture, name: &str, present: bool) -> bool {
        for _ in 0..100 {
            if capture.interfaces().iter().any(|i| i == name) == present {
                return true;
            }
            pause(Duration::from_millis(50));
        }
        false
    }

    /// An interface that appears after capture started is picked up, and dropped when it goes.
    /// Needs root (CAP_NET_ADMIN to add a veth pair): run by the project's test script as root.
    #[test]
    fn interfaces_that_appear_later_are_captured() {
        let name = format!("sa-t{}", std::process::id() % 100_000);
        let (sender, _frames) = std::sync::mpsc::sync_channel(16);
        let capture = Capture::start(vec![name.clone()], sender, Duration::from_millis(200))
            .expect("capture needs CAP_NET_RAW (run as root)");
        assert!(capture.interfaces().is_empty());
        let added = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{name}p"),
            ])
            .status()
            .expect("ip");
        assert!(added.success(), "ip link add needs root");
        let link = Link(name.clone());
        let up = std::process::Command::new("ip")
            .args(["link", "set", &name, "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        assert!(
            wait_for(&capture, &name, true),
            "new interface not captured"
        );
        drop(link);
        assert!(
            wait_for(&capture, &name, false),
            "removed interface still captured"
        );
        capture.stop();
    }

    /// The kernel accepts the program (its verifier runs at attach time) for every framing.
    /// Needs CAP_NET_RAW: the project's test script runs the agent tests as root.
    #[test]
    fn the_kernel_accepts_the_filter() {
        let socket = match new_packet_socket() {
            Ok(socket) => socket,
            Err(error) => panic!("this test needs CAP_NET_RAW (run as root): {error}"),
        };
        for framing in [Framing::Ethernet, Framing::RawIp] {
            for loopback in [false, true] {
                let program = filter::program(framing, loopback);
                socket
                    .attach_filter(&filter::to_sock_filters(&program))
                    .expect("kernel refused the filter");
            }
        }
    }
}
