//! Helpers shared by the host sensor tests: child processes that are always stopped, and
//! copies of real programs under the names AI tools use.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_shadowai-agent");

/// A child process killed (by pid) and reaped when dropped, also when a test fails.
pub struct ProcessGuard {
    child: Option<Child>,
}

impl ProcessGuard {
    pub fn spawn(command: &mut Command) -> ProcessGuard {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        ProcessGuard { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the child to end by itself and returns what it printed.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.child.take().expect("child present");
        child.wait_with_output().expect("wait for child")
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Places a copy of a real program at `path` (a hard link when the filesystem allows it), so
/// that the process's name and executable path are those of the AI tool imitated.
pub fn program_copy(real: &str, path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
    if std::fs::hard_link(real, path).is_err() {
        std::fs::copy(real, path).expect("copy program");
    }
    path.to_path_buf()
}

/// `node`, found on PATH.
pub fn node() -> String {
    for candidate in ["/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"] {
        if Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!("these tests need node (apt-get install nodejs)");
}

/// Runs the agent to completion.
pub fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .output()
        .expect("the agent binary runs")
}

/// The JSON lines of an output.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// Whether the tests run as root (process events need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Waits until `path` exists (a child signalled it is ready), at most 10 s.
pub fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        pause(20);
    }
}

/// Gives child processes a moment (a test waiting for processes, not a runtime thread).
#[allow(clippy::disallowed_methods)]
pub fn pause(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
