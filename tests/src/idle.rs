//! Idles until killed. Copied by the end-to-end tests to names like `ollama` so that the agent's
//! process sensor sees a real process with that name and command line, without running the tool.
//!
//! It also exits once its parent is gone: if a test run is killed hard (no Drop guards run), a
//! leftover `ollama serve` would otherwise live on and be detected by every later run's agent,
//! making "this alert names *my* child" assertions race with a stranger.

use std::time::Duration;

fn main() {
    let parent = std::os::unix::process::parent_id();
    loop {
        // park_timeout, not sleep: this process must stay idle and a spurious wake-up is harmless
        std::thread::park_timeout(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}
