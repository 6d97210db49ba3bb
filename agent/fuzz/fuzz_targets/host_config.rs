//! Hostile config files: every format parses or fails cleanly, and what parses is read against
//! every catalog config file without panicking.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shadowai_agent::host::{files, inventory};
use shadowai_catalog::{Catalog, ConfigFormat};

static CATALOG: LazyLock<Option<Catalog>> = LazyLock::new(|| Catalog::embedded().ok());

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = match selector % 4 {
        0 => ConfigFormat::Json,
        1 => ConfigFormat::Jsonc,
        2 => ConfigFormat::Toml,
        _ => ConfigFormat::Yaml,
    };
    if let Ok(document) = files::parse(body, format)
        && let Some(catalog) = CATALOG.as_ref()
    {
        for location in catalog.config_locations() {
            let _ = location.config.raised_settings(&document);
            let _ = location.config.mcp_servers(&document);
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = inventory::split_extension_folder(text);
        let _ = inventory::url_host(text);
    }
});
