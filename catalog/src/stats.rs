//! Counts of what a catalog holds: the coverage numbers the catalog issue promises, checked by
//! tests and printed by `shadowai-agent match --stats`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::model::{Category, ConfigKind, Os, Product};

/// What a catalog holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Products.
    pub products: usize,
    /// Domain rules (exact, suffix and wildcard).
    pub domain_rules: usize,
    /// Process signatures.
    pub process_signatures: usize,
    /// Risky command-line flags.
    pub risky_flags: usize,
    /// Risky settings in config files.
    pub risky_settings: usize,
    /// Config file entries (MCP lists and settings).
    pub config_locations: usize,
    /// Products with at least one MCP config file.
    pub mcp_clients: usize,
    /// Products whose MCP config files have paths on Linux, macOS and Windows.
    pub mcp_clients_all_os: usize,
    /// Desktop app entries.
    pub apps: usize,
    /// IDE extension ids.
    pub extensions: usize,
    /// Distinct default listening ports.
    pub ports: usize,
    /// Counts per category (every category is present, zero or not).
    pub per_category: BTreeMap<Category, CategoryStats>,
}

/// What a catalog holds in one category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CategoryStats {
    /// Products.
    pub products: usize,
    /// Domain rules.
    pub domain_rules: usize,
    /// Process signatures.
    pub process_signatures: usize,
}

impl Stats {
    /// Risky flags and risky settings together: every way the catalog knows that a human or the
    /// sandbox was taken out of the loop.
    pub fn risky_total(&self) -> usize {
        self.risky_flags + self.risky_settings
    }
}

pub(crate) fn count(products: &[Product]) -> Stats {
    let mut stats = Stats {
        products: products.len(),
        per_category: Category::ALL
            .iter()
            .map(|category| (*category, CategoryStats::default()))
            .collect(),
        ..Stats::default()
    };
    let mut ports = BTreeSet::new();
    for product in products {
        stats.domain_rules += product.domains.len();
        stats.process_signatures += product.processes.len();
        stats.risky_flags += product.risky_flags.len();
        stats.config_locations += product.configs.len();
        stats.apps += product.apps.len();
        stats.extensions += product.extensions.len();
        ports.extend(product.ports.iter().copied());
        let mut mcp_os = BTreeSet::new();
        let mut is_mcp_client = false;
        for config in &product.configs {
            stats.risky_settings += config.settings.len();
            if config.kind == ConfigKind::Mcp {
                is_mcp_client = true;
                mcp_os.extend(
                    Os::ALL
                        .into_iter()
                        .filter(|os| !config.paths.for_os(*os).is_empty()),
                );
            }
        }
        if is_mcp_client {
            stats.mcp_clients += 1;
        }
        if mcp_os.len() == Os::ALL.len() {
            stats.mcp_clients_all_os += 1;
        }
        let category = stats.per_category.entry(product.category).or_default();
        category.products += 1;
        category.domain_rules += product.domains.len();
        category.process_signatures += product.processes.len();
    }
    stats.ports = ports.len();
    stats
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "products            {}", self.products)?;
        writeln!(f, "domain rules        {}", self.domain_rules)?;
        writeln!(f, "process signatures  {}", self.process_signatures)?;
        writeln!(
            f,
            "risky settings      {} ({} flags, {} config settings)",
            self.risky_total(),
            self.risky_flags,
            self.risky_settings
        )?;
        writeln!(
            f,
            "MCP clients         {} ({} with paths on Linux, macOS and Windows)",
            self.mcp_clients, self.mcp_clients_all_os
        )?;
        writeln!(f, "config locations    {}", self.config_locations)?;
        writeln!(f, "desktop apps        {}", self.apps)?;
        writeln!(f, "IDE extensions      {}", self.extensions)?;
        writeln!(f, "local server ports  {}", self.ports)?;
        writeln!(f, "per category        products  domains  processes")?;
        for (category, counts) in &self.per_category {
            writeln!(
                f,
                "  {:<20} {:>8} {:>8} {:>10}",
                category.as_str(),
                counts.products,
                counts.domain_rules,
                counts.process_signatures
            )?;
        }
        Ok(())
    }
}
