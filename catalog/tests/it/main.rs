//! Integration tests of the catalog crate: one binary, one module per concern.

mod bundle;
mod categories;
mod coverage;
mod domains;
mod embedded;
mod fuzz;
mod precision;
mod processes;
mod regex_errors;
mod rules;
mod validation;

use shadowai_catalog::Catalog;

/// The built-in catalog; every test module shares it.
fn catalog() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| match Catalog::embedded() {
        Ok(catalog) => catalog,
        Err(error) => panic!("the embedded catalog must load:\n{error}"),
    })
}
