//! Which process owns a flow's local socket (Linux `/proc`).
//!
//! At detection time (never per packet): find the socket's inode in `/proc/net/{tcp,tcp6,udp,
//! udp6}` by its local address and port, then the process whose `/proc/PID/fd` holds
//! `socket:[inode]`. The inode → pid map comes from one walk of `/proc/*/fd`, reused until an
//! inode is missing from it and the last walk is at least [`MIN_WALK_INTERVAL_MS`] old; a walk
//! reads at most [`MAX_WALK_PIDS`] processes and [`MAX_WALK_FDS`] descriptors. A lookup result is
//! reused for [`RESULT_TTL_MS`] for the same socket.
//!
//! When it cannot tell, it says why ([`Unattributed`]); it never guesses. Sockets of other
//! network namespaces are not in this namespace's tables: those flows are "socket closed or not
//! this host's". Without root, other users' `/proc/PID/fd` cannot be read: "not visible".

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::detector::{Attribute, Transport, Unattributed};
use crate::detect::{ProcessRef, RawProcess};

/// Shortest time between two walks of `/proc/*/fd`, ms.
pub const MIN_WALK_INTERVAL_MS: i64 = 250;
/// Most processes read by one walk.
pub const MAX_WALK_PIDS: usize = 16_384;
/// Most descriptors read by one walk.
pub const MAX_WALK_FDS: usize = 262_144;
/// How long a lookup result is reused for the same socket, ms.
pub const RESULT_TTL_MS: i64 = 2_000;
/// Most lines read from one `/proc/net` table.
const MAX_TABLE_LINES: usize = 1_000_000;
/// Most bytes of a command line read.
const MAX_CMDLINE_BYTES: u64 = 64 * 1024;
/// `/proc/PID/stat` start times are in USER_HZ ticks, 100 on every Linux ABI.
const USER_HZ: u64 = 100;

/// `/proc`-based attribution. See the module documentation.
#[derive(Debug)]
pub struct ProcAttribution {
    proc_root: PathBuf,
    owners: HashMap<u64, u32>,
    last_walk_ms: Option<i64>,
    users: Option<HashMap<u32, String>>,
    boot_time_s: Option<u64>,
    recent: HashMap<(Transport, SocketAddr), (i64, Result<ProcessRef, Unattributed>)>,
}

impl Default for ProcAttribution {
    fn default() -> Self {
        Self::new(Path::new("/proc"))
    }
}

impl ProcAttribution {
    /// Attribution reading the proc file system mounted at `proc_root`.
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            owners: HashMap::new(),
            last_walk_ms: None,
            users: None,
            boot_time_s: None,
            recent: HashMap::new(),
        }
    }

    fn lookup(
        &mut self,
        transport: Transport,
        local: SocketAddr,
        now_ms: i64,
    ) -> Result<ProcessRef, Unattributed> {
        let inode = self.find_inode(transport, local)?;
        let pid = match self.owners.get(&inode) {
            Some(pid) => *pid,
            None => {
                let is_due = self.last_walk_ms.is_none_or(|last| {
                    now_ms.saturating_sub(last) >= MIN_WALK_INTERVAL_MS || now_ms < last
                });
                if !is_due {
                    return Err(Unattributed::NotVisible);
                }
                self.walk(now_ms);
                *self.owners.get(&inode).ok_or(Unattributed::NotVisible)?
            }
        };
        match self.read_process(pid) {
            Some(process) => Ok(process),
            None => {
                // The owner exited (or the pid was reused) since the walk.
                self.owners.remove(&inode);
                Err(Unattributed::SocketClosed)
            }
        }
    }

    /// The inode of the socket bound to `local`, from this namespace's tables.
    fn find_inode(&self, transport: Transport, local: SocketAddr) -> Result<u64, Unattributed> {
        let (v4, v6) = match transport {
            Transport::Tcp => ("net/tcp", "net/tcp6"),
            Transport::Udp => ("net/udp", "net/udp6"),
        };
        // A v4 flow of a dual-stack socket is listed in the v6 table as ::ffff:a.b.c.d.
        let tables: &[&str] = match local {
            SocketAddr::V4(_) => &[v4, v6],
            SocketAddr::V6(_) => &[v6],
        };
        let mut wildcard = None;
        for table in tables {
            let Ok(file) = std::fs::File::open(self.proc_root.join(table)) else {
                continue;
            };
            for line in BufReader::new(file).lines().skip(1).take(MAX_TABLE_LINES) {
                let Ok(line) = line else { break };
                let Some(entry) = parse_socket_line(&line) else {
                    continue;
                };
                if entry.local.port() != local.port() || entry.inode == 0 {
                    continue;
                }
                let ip = canonical(entry.local.ip());
                if ip == canonical(local.ip()) {
                    return Ok(entry.inode);
                }
                // An unconnected UDP socket bound to the wildcard address sends from any address.
                if transport == Transport::Udp && ip.is_unspecified() && wildcard.is_none() {
                    wildcard = Some(entry.inode);
                }
            }
        }
        wildcard.ok_or(Unattributed::SocketClosed)
    }

    /// Rebuilds the inode → pid map from `/proc/*/fd`.
    fn walk(&mut self, now_ms: i64) {
        self.last_walk_ms = Some(now_ms);
        self.owners.clear();
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        let own_pid = std::process::id();
        let mut fds_read = 0usize;
        for entry in entries.flatten().take(MAX_WALK_PIDS * 2) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                fds_read += 1;
                if fds_read > MAX_WALK_FDS {
                    return;
                }
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = socket_inode(target.as_os_str().to_str().unwrap_or("")) else {
                    continue;
                };
                // A socket shared by a parent and its children belongs to the first seen; the
                // agent's own sockets never name a flow of another process.
                if pid != own_pid || !self.owners.contains_key(&inode) {
                    self.owners.entry(inode).or_insert(pid);
                }
            }
        }
    }

    fn read_process(&mut self, pid: u32) -> Option<ProcessRef> {
        let dir = self.proc_root.join(pid.to_string());
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
        };
        let parent_pid = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
        let uid: Option<u32> = field("Uid:")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok());
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim_end_matches('\n');
        let exe = std::fs::read_link(dir.join("exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut raw = Vec::new();
        if let Ok(file) = std::fs::File::open(dir.join("cmdline")) {
            let _ = file.take(MAX_CMDLINE_BYTES).read_to_end(&mut raw);
        }
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .take(4096)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let start_ticks = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| start_time_ticks(&stat));
        let boot = self.boot_time();
        let started_at_ms = match (start_ticks, boot) {
            (Some(ticks), Some(boot)) => {
                i64::try_from(boot.saturating_add(ticks / USER_HZ).saturating_mul(1000))
                    .unwrap_or(0)
            }
            _ => 0,
        };
        let user = uid
            .and_then(|uid| self.users().get(&uid).cloned())
            .unwrap_or_default();
        Some(ProcessRef::from_raw(&RawProcess {
            pid,
            parent_pid,
            started_at_ms,
            name,
            exe: &exe,
            args: &args,
            user: &user,
            uid,
        }))
    }

    fn boot_time(&mut self) -> Option<u64> {
        if self.boot_time_s.is_none() {
            let stat = std::fs::read_to_string(self.proc_root.join("stat")).ok()?;
            self.boot_time_s = stat
                .lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok());
        }
        self.boot_time_s
    }

    fn users(&mut self) -> &HashMap<u32, String> {
        self.users.get_or_insert_with(|| {
            let mut text = String::new();
            if let Ok(file) = std::fs::File::open("/etc/passwd") {
                let _ = file.take(4 << 20).read_to_string(&mut text);
            }
            parse_passwd(&text)
        })
    }
}

impl Attribute for ProcAttribution {
    fn attribute(
        &mut self,
        transport: Transport,
        local: SocketAddr,
        now_ms: i64,
    ) -> Result<ProcessRef, Unattributed> {
        if let Some((at, result)) = self.recent.get(&(transport, local))
            && (0..RESULT_TTL_MS).contains(&now_ms.saturating_sub(*at))
        {
            return result.clone();
        }
        let result = self.lookup(transport, local, now_ms);
        if self.recent.len() >= 1024 {
            self.recent
                .retain(|_, (at, _)| (0..RESULT_TTL_MS).contains(&now_ms.saturating_sub(*at)));
            if self.recent.len() >= 1024 {
                self.recent.clear();
            }
        }
        self.recent
            .insert((transport, local), (now_ms, result.clone()));
        result
    }
}

/// One row of `/proc/net/{tcp,udp}{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLine {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (0 for sockets without one, e.g. TIME_WAIT).
    pub inode: u64,
}

/// Parses a table row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_socket_line(line: &str) -> Option<SocketLine> {
    let mut fields = line.split_whitespace();
    let _sl = fields.next()?;
    let local = parse_hex_socket(fields.next()?)?;
    let remote = parse_hex_socket(fields.next()?)?;
    let mut rest = fields.skip(4);
    let uid = rest.next()?.parse().ok()?;
    let _timeout = rest.next()?;
    let inode = rest.next()?.parse().ok()?;
    Some(SocketLine {
        local,
        remote,
        uid,
        inode,
    })
}

/// `0100007F:1F90` (v4) or 32 hex digits + port (v6); each 32-bit word is printed in host order.
fn parse_hex_socket(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(address)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(address.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn word(hex: &str) -> Option<[u8; 4]> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // The kernel prints the in-memory (network order) bytes as a native-endian integer.
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

/// The address without IPv4-mapped IPv6 wrapping.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Field 22 of `/proc/PID/stat` (start time in ticks); the name may contain `)` and spaces.
fn start_time_ticks(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .take(100_000)
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, crate::redact::cap(name, 64).0.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_parse() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        let row = parse_socket_line(v4).unwrap();
        assert_eq!(row.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(row.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!((row.uid, row.inode), (1000, 123_456));
        let v6 = "   1: 0000000000000000FFFF00000100007F:01BB 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 42 1";
        let row = parse_socket_line(v6).unwrap();
        assert_eq!(row.local, "[::ffff:127.0.0.1]:443".parse().unwrap());
        assert_eq!(row.remote, "[::1]:50000".parse().unwrap());
        assert_eq!(
            canonical(row.local.ip()),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        // Every prefix of a row is refused or parsed, never a panic.
        for line in [v4, v6] {
            for end in 0..line.len() {
                let _ = parse_socket_line(&line[..end]);
            }
        }
        assert_eq!(
            parse_socket_line("  sl  local_address rem_address   st tx_queue"),
            None
        );
        assert_eq!(
            parse_socket_line("0: ZZZZZZZZ:0000 00000000:0000 0A 0 0 0 0 0 1"),
            None
        );
    }

    #[test]
    fn stat_start_time_survives_hostile_names() {
        let stat = "4242 (evil) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time_ticks(stat), Some(987_654));
        assert_eq!(start_time_ticks("4242 (x"), None);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
        assert_eq!(
            parse_passwd("root:x:0:0::/root:/bin/sh\nbad\nalice:x:1000:1000::/h:/bin/sh\n")[&1000],
            "alice"
        );
    }

    #[test]
    fn a_real_tcp_connection_is_attributed_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut attribution = ProcAttribution::default();
        let process = attribution
            .attribute(Transport::Tcp, client.local_addr().unwrap(), 1_000)
            .expect("own socket");
        assert_eq!(process.pid, std::process::id());
        assert!(!process.name.is_empty());
        assert!(
            process.started_at_ms > 1_500_000_000_000,
            "{}",
            process.started_at_ms
        );
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid: u32 = own
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(process.uid, Some(uid));
    }

    #[test]
    fn a_udp_socket_and_a_closed_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect("127.0.0.1:9").unwrap();
        let local = socket.local_addr().unwrap();
        let mut attribution = ProcAttribution::default();
        assert_eq!(
            attribution
                .attribute(Transport::Udp, local, 1_000)
                .map(|p| p.pid),
            Ok(std::process::id())
        );
        drop(socket);
        // After the reuse window, a closed socket is reported as such.
        assert_eq!(
            attribution.attribute(Transport::Udp, local, 1_000 + RESULT_TTL_MS),
            Err(Unattributed::SocketClosed)
        );
    }
}
