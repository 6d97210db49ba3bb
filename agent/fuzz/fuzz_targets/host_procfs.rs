//! `/proc` texts a process controls (its name, arguments, environment) and `/proc/net/tcp`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_agent::host::{listeners, procfs};

fuzz_target!(|data: &[u8]| {
    let _ = procfs::parse_stat(data);
    let args = procfs::parse_cmdline(data);
    let _ = shadowai_agent::redact::redact_cmdline(&args);
    for (name, _) in procfs::parse_environ_allowlisted(data) {
        assert!(procfs::ENV_ALLOWLIST.contains(&name.as_str()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for socket in listeners::parse_table(text) {
            let _ = socket.exposed();
        }
    }
});
