//! Reading one process from Linux `/proc`, fast enough to catch a child that lives for a few
//! milliseconds: `stat` (parent, start time), `comm`, `cmdline`, `exe`, and, for an allowlist of
//! variable names only, `environ`.
//!
//! Every file is read with a size cap; everything in them is attacker-controlled (a process
//! chooses its own name and arguments), so parsing never panics and never trusts lengths.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Most bytes of `/proc/<pid>/cmdline` read (the wire keeps 8 KiB after redaction anyway).
const MAX_CMDLINE_READ: u64 = 64 * 1024;
/// Most bytes of `/proc/<pid>/environ` read.
const MAX_ENVIRON_READ: u64 = 256 * 1024;
/// Most processes [`Procfs::ancestors_cached`] remembers.
const MAX_CACHED: usize = 4096;
/// Most bytes of `/proc/<pid>/stat` read (a 16-byte comm plus ~50 numbers fit easily).
const MAX_STAT_READ: u64 = 4096;

/// Environment variables whose value changes how risky an agent is; no other value is ever read
/// from another process's environment.
pub const ENV_ALLOWLIST: &[&str] = &[
    "GOOSE_MODE",
    "OLLAMA_HOST",
    "OLLAMA_ORIGINS",
    "CLAUDE_CODE_DANGEROUSLY_SKIP_PERMISSIONS",
    "CODEX_SANDBOX",
    "GEMINI_YOLO",
    "AIDER_YES_ALWAYS",
    "OPENCLAW_EXEC_APPROVALS",
];

/// Risks an allowlisted variable's value raises: `(variable, risk, explanation)` when the
/// value passes the test.
pub fn env_risks(vars: &[(String, String)]) -> Vec<(&'static str, String)> {
    let mut risks = Vec::new();
    for (name, value) in vars {
        let lower = value.trim().to_ascii_lowercase();
        let truthy = matches!(lower.as_str(), "1" | "true" | "yes" | "on");
        let found = match name.as_str() {
            "GOOSE_MODE" if lower == "auto" => Some("approval_bypass"),
            "GOOSE_MODE" if lower == "smart_approve" => Some("approval_bypass"),
            "OLLAMA_HOST" if !is_loopback_host(&lower) => Some("network_exposed"),
            "OLLAMA_ORIGINS" if lower.split(',').any(|o| o.trim() == "*") => {
                Some("network_exposed")
            }
            "CLAUDE_CODE_DANGEROUSLY_SKIP_PERMISSIONS" | "GEMINI_YOLO" | "AIDER_YES_ALWAYS"
                if truthy =>
            {
                Some("approval_bypass")
            }
            "CODEX_SANDBOX" if lower == "danger-full-access" => Some("sandbox_off"),
            "OPENCLAW_EXEC_APPROVALS" if matches!(lower.as_str(), "off" | "0" | "false") => {
                Some("approval_bypass")
            }
            _ => None,
        };
        if let Some(risk) = found {
            let shown = crate::redact::redact_text(value);
            risks.push((risk, format!("{name}={}", crate::redact::cap(&shown, 64).0)));
        }
    }
    risks
}

/// Whether an `OLLAMA_HOST` value binds loopback only (`127.0.0.1:11434`, `localhost`, `[::1]`).
fn is_loopback_host(value: &str) -> bool {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or_default()
    };
    host.is_empty()
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The fields of `/proc/<pid>/stat` the sensor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The name between the parentheses (at most 15 bytes on Linux, any bytes).
    pub comm: String,
    /// Parent process id.
    pub ppid: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The name may contain spaces and `)`, so the fields
/// start after the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // After the name: state(3) ppid(4) ... starttime(22); `fields[0]` is the state.
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        start_ticks,
    })
}

/// Splits `/proc/<pid>/cmdline` (NUL-separated, usually NUL-terminated) into arguments.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The allowlisted variables of an `environ` block (NUL-separated `NAME=value`); everything
/// else is skipped without being copied.
pub fn parse_environ_allowlisted(bytes: &[u8]) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for entry in bytes.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (entry.get(..eq).unwrap_or_default(), entry.get(eq + 1..));
        if let Some(allowed) = ENV_ALLOWLIST.iter().find(|n| n.as_bytes() == name) {
            let value = String::from_utf8_lossy(value.unwrap_or_default());
            kept.push((
                (*allowed).to_owned(),
                crate::redact::cap(&value, 256).0.to_owned(),
            ));
        }
    }
    kept
}

/// One process as read from `/proc` at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
    /// `comm`.
    pub name: String,
    /// Executable path (`""` when unreadable).
    pub exe: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Owner of `/proc/<pid>` (the real user id).
    pub uid: Option<u32>,
}

impl ProcInfo {
    /// Start time in seconds since the epoch, given the boot time.
    pub fn start_time_s(&self, boot_time_s: u64) -> u64 {
        boot_time_s.saturating_add(self.start_ticks / CLOCK_TICKS)
    }
}

/// Where `/proc` is (tests and containers may use another mount).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs {
            root: PathBuf::from("/proc"),
        }
    }
}

impl Procfs {
    /// `/proc` at another place.
    pub fn at(root: impl Into<PathBuf>) -> Procfs {
        Procfs { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(name)
    }

    /// Reads one process; `None` when it is gone (or `stat` is unreadable).
    pub fn read(&self, pid: u32) -> Option<ProcInfo> {
        let stat = parse_stat(&read_capped(&self.file(pid, "stat"), MAX_STAT_READ)?)?;
        let args = read_capped(&self.file(pid, "cmdline"), MAX_CMDLINE_READ)
            .map(|bytes| parse_cmdline(&bytes))
            .unwrap_or_default();
        let uid = uid_of(&self.root.join(pid.to_string()));
        let exe = std::fs::read_link(self.file(pid, "exe"))
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(ProcInfo {
            pid,
            ppid: stat.ppid,
            start_ticks: stat.start_ticks,
            name: stat.comm,
            exe,
            args,
            uid,
        })
    }

    /// The chain of parents of `ppid` (that process first), at most `max` long; stops at pid 1,
    /// at a process that is gone, or at a loop.
    pub fn ancestors(&self, mut ppid: u32, max: usize) -> Vec<ProcInfo> {
        let mut chain: Vec<ProcInfo> = Vec::new();
        while ppid > 1 && chain.len() < max {
            if chain.iter().any(|seen| seen.pid == ppid) {
                break;
            }
            let Some(info) = self.read(ppid) else { break };
            ppid = info.ppid;
            chain.push(info);
        }
        chain
    }

    /// Like [`Procfs::ancestors`], reading only `stat` of each parent and taking name, exe and
    /// arguments from `cache` (by pid) when the same process (pid and start time) was read
    /// before: parents (shells, terminals, agents) live long, so an `exec` costs a few `stat`
    /// reads. The caller removes a pid from the cache when that process calls `exec`.
    pub fn ancestors_cached(
        &self,
        mut ppid: u32,
        max: usize,
        cache: &mut HashMap<u32, ProcInfo>,
    ) -> Vec<ProcInfo> {
        let mut chain: Vec<ProcInfo> = Vec::new();
        while ppid > 1 && chain.len() < max {
            if chain.iter().any(|seen| seen.pid == ppid) {
                break;
            }
            let Some(stat) = read_capped(&self.file(ppid, "stat"), MAX_STAT_READ)
                .and_then(|bytes| parse_stat(&bytes))
            else {
                break;
            };
            let info = match cache.get(&ppid) {
                Some(info) if info.start_ticks == stat.start_ticks => info.clone(),
                _ => {
                    let Some(info) = self.read(ppid) else { break };
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                    cache.insert(ppid, info.clone());
                    info
                }
            };
            ppid = stat.ppid;
            chain.push(info);
        }
        chain
    }

    /// The allowlisted environment variables of a process ([`ENV_ALLOWLIST`]); empty when
    /// unreadable (another user's process without root).
    pub fn allowlisted_env(&self, pid: u32) -> Vec<(String, String)> {
        read_capped(&self.file(pid, "environ"), MAX_ENVIRON_READ)
            .map(|bytes| parse_environ_allowlisted(&bytes))
            .unwrap_or_default()
    }

    /// The boot time in seconds since the epoch, from `/proc/stat`'s `btime`.
    pub fn boot_time_s(&self) -> Option<u64> {
        let bytes = read_capped(&self.root.join("stat"), 64 * 1024)?;
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse().ok())
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` start times (`_SC_CLK_TCK`, 100 on every Linux
/// port that matters; sysinfo assumes the same).
pub const CLOCK_TICKS: u64 = 100;

#[cfg(unix)]
fn uid_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|meta| meta.uid())
}

#[cfg(not(unix))]
fn uid_of(_path: &Path) -> Option<u32> {
    None
}

/// Reads at most `max` bytes of a file.
fn read_capped(path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (my (odd) name) S 1000 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 18446744073709551615";

    #[test]
    fn stat_fields_are_found_after_the_last_paren() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!(stat.ppid, 1000);
        assert_eq!(stat.start_ticks, 123_456);
    }

    #[test]
    fn every_prefix_of_stat_is_survived() {
        for end in 0..=STAT.len() {
            let parsed = parse_stat(&STAT[..end]);
            if end < STAT.len() - 30 {
                assert!(parsed.is_none() || parsed.unwrap().start_ticks > 0);
            }
        }
        assert!(parse_stat(b")(").is_none());
        assert!(parse_stat(&[0xff, b'(', 0xfe, b')', b' ']).is_none());
    }

    #[test]
    fn cmdlines_split_on_nul() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0kubectl get pods\0"),
            ["sh", "-c", "kubectl get pods"]
        );
        assert_eq!(parse_cmdline(b"one"), ["one"]);
        assert!(parse_cmdline(b"").is_empty());
        assert!(parse_cmdline(b"\0").is_empty());
        let all = b"a\0\xff\0c\0";
        for end in 0..=all.len() {
            let _ = parse_cmdline(&all[..end]);
        }
    }

    #[test]
    fn only_allowlisted_variables_are_kept() {
        let environ = b"OPENAI_API_KEY=sk-secret\0GOOSE_MODE=auto\0PATH=/bin\0OLLAMA_HOST=0.0.0.0:11434\0broken\0=x\0";
        let kept = parse_environ_allowlisted(environ);
        assert_eq!(
            kept,
            [
                ("GOOSE_MODE".to_owned(), "auto".to_owned()),
                ("OLLAMA_HOST".to_owned(), "0.0.0.0:11434".to_owned())
            ]
        );
        for end in 0..=environ.len() {
            let kept = parse_environ_allowlisted(&environ[..end]);
            assert!(kept.iter().all(|(name, _)| name != "OPENAI_API_KEY"));
        }
    }

    #[test]
    fn allowlisted_values_raise_risks() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        let risks = env_risks(&vars(&[
            ("GOOSE_MODE", "auto"),
            ("OLLAMA_HOST", "0.0.0.0:11434"),
        ]));
        assert_eq!(risks.len(), 2);
        assert_eq!(risks[0].0, "approval_bypass");
        assert_eq!(
            risks[1],
            ("network_exposed", "OLLAMA_HOST=0.0.0.0:11434".to_owned())
        );
        assert!(env_risks(&vars(&[("OLLAMA_HOST", "127.0.0.1:11434")])).is_empty());
        assert!(env_risks(&vars(&[("OLLAMA_HOST", "http://[::1]:1")])).is_empty());
        assert!(env_risks(&vars(&[("GOOSE_MODE", "approve")])).is_empty());
    }

    #[test]
    fn this_process_reads_back() {
        let procfs = Procfs::default();
        let me = procfs.read(std::process::id()).unwrap();
        assert!(!me.args.is_empty());
        assert!(me.ppid > 0);
        let chain = procfs.ancestors(me.ppid, 16);
        assert!(!chain.is_empty());
        let mut cache = HashMap::new();
        assert_eq!(procfs.ancestors_cached(me.ppid, 16, &mut cache), chain);
        assert_eq!(procfs.ancestors_cached(me.ppid, 16, &mut cache), chain);
        assert_eq!(cache.len(), chain.len());
        assert!(procfs.boot_time_s().unwrap() > 1_500_000_000);
        assert!(procfs.read(u32::MAX).is_none());
    }
}
