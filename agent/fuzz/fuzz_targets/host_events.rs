//! Proc connector datagrams: `parse_messages` never panics and never returns more events than
//! the datagram could hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_agent::host::events::parse_messages;

fuzz_target!(|data: &[u8]| {
    let events = parse_messages(data);
    assert!(events.len() <= data.len() / 16 + 1);
});
