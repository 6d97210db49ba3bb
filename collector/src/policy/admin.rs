//! Editing the policy: the checks the JSON API and the CLI share. Input is validated here (lengths,
//! names, no control characters, expiry in the future), the product's category is taken from the
//! built-in catalog, and the store records the change with its audit row.

use std::sync::OnceLock;

use shadowai_catalog::{Catalog, Category};

use super::rules::{
    Reason, SETTING_SPECS, Sanction, Severity, SeverityOverride, Suppression, TenantRule,
};
use crate::store::{
    NewSanction, NewSeverityOverride, NewSuppression, NewTenantRule, PolicyActor, Store, StoreError,
};

/// Longest product id, group, tenant, owner and note accepted.
pub const MAX_PRODUCT: usize = 128;
pub const MAX_GROUP: usize = 128;
pub const MAX_TENANT: usize = 256;
pub const MAX_OWNER: usize = 128;
pub const MAX_NOTE: usize = 1024;
/// Longest a suppression may last.
pub const MAX_SUPPRESSION_MS: i64 = 366 * 24 * 3_600_000;

/// Why a policy change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The request is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(message.into())
}

/// `value` if it has at most `max` bytes, no control characters, and is non-empty unless allowed.
pub fn text(
    field: &str,
    value: &str,
    max: usize,
    may_be_empty: bool,
) -> Result<String, PolicyError> {
    if value.is_empty() && !may_be_empty {
        return Err(invalid(format!("{field} is required")));
    }
    if value.len() > max {
        return Err(invalid(format!("{field} must be at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

/// A catalog-style product id: `[a-z0-9._-]`, 1 to 128 bytes.
pub fn product_id(field: &str, value: &str, may_be_empty: bool) -> Result<String, PolicyError> {
    if value.is_empty() && may_be_empty {
        return Ok(String::new());
    }
    let is_id = !value.is_empty()
        && value.len() <= MAX_PRODUCT
        && value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !is_id {
        return Err(invalid(format!(
            "{field} must be a product id like openai.chatgpt (1 to {MAX_PRODUCT} of a-z 0-9 . _ -)"
        )));
    }
    Ok(value.to_owned())
}

/// A reason id, or `""` for any when allowed.
pub fn reason_id(value: &str, may_be_empty: bool) -> Result<String, PolicyError> {
    if value.is_empty() && may_be_empty {
        return Ok(String::new());
    }
    value
        .parse::<Reason>()
        .map(|r| r.as_str().to_owned())
        .map_err(|_| {
            let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            invalid(format!("reason must be one of {}", known.join(", ")))
        })
}

/// A severity name.
pub fn severity(value: &str) -> Result<Severity, PolicyError> {
    value
        .parse()
        .map_err(|_| invalid("severity must be one of info, low, medium, high, critical"))
}

fn catalog() -> Option<&'static Catalog> {
    static CATALOG: OnceLock<Option<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().ok()).as_ref()
}

/// The category of a catalog product, from the built-in catalog.
pub fn catalog_category(product: &str) -> Option<&'static str> {
    catalog()?.product(product).map(|p| p.category.as_str())
}

/// Sanctions a product for a group (`""`: every group). The category comes from the catalog;
/// `category` must be given (and is checked) for a product the catalog does not know.
pub async fn sanction(
    store: &Store,
    product: &str,
    group: &str,
    category: Option<&str>,
    note: &str,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<Sanction, PolicyError> {
    let product = product_id("product", product, false)?;
    let category = match (catalog_category(&product), category) {
        (Some(known), None) => known.to_owned(),
        (Some(known), Some(given)) if known == given => known.to_owned(),
        (Some(known), Some(_)) => {
            return Err(invalid(format!(
                "{product} is a {known} product in the catalog"
            )));
        }
        (None, Some(given)) if Category::ALL.iter().any(|c| c.as_str() == given) => {
            given.to_owned()
        }
        (None, _) => {
            let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            return Err(invalid(format!(
                "{product} is not in the catalog: give its category ({})",
                known.join(", ")
            )));
        }
    };
    let new = NewSanction {
        product,
        category,
        group: text("group", group, MAX_GROUP, true)?,
        note: text("note", note, MAX_NOTE, true)?,
    };
    Ok(store.add_sanction(&new, actor, now_ms).await?)
}

/// Withdraws a sanction.
pub async fn unsanction(
    store: &Store,
    product: &str,
    group: &str,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<Sanction, PolicyError> {
    let product = product_id("product", product, false)?;
    let group = text("group", group, MAX_GROUP, true)?;
    Ok(store
        .remove_sanction(&product, &group, actor, now_ms)
        .await?)
}

/// Declares a tenant of a product ours.
pub async fn add_tenant(
    store: &Store,
    product: &str,
    tenant: &str,
    group: &str,
    note: &str,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<TenantRule, PolicyError> {
    let new = NewTenantRule {
        product: product_id("product", product, false)?,
        tenant: text("tenant", tenant, MAX_TENANT, false)?.to_ascii_lowercase(),
        group: text("group", group, MAX_GROUP, true)?,
        note: text("note", note, MAX_NOTE, true)?,
    };
    Ok(store.add_tenant_rule(&new, actor, now_ms).await?)
}

/// Adds a severity override; at least one of reason and product must be named.
#[allow(clippy::too_many_arguments)]
pub async fn add_override(
    store: &Store,
    reason: &str,
    product: &str,
    group: &str,
    severity_name: &str,
    note: &str,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<SeverityOverride, PolicyError> {
    let new = NewSeverityOverride {
        reason: reason_id(reason, true)?,
        product: product_id("product", product, true)?,
        group: text("group", group, MAX_GROUP, true)?,
        severity: severity(severity_name)?,
        note: text("note", note, MAX_NOTE, true)?,
    };
    if new.reason.is_empty() && new.product.is_empty() {
        return Err(invalid("an override names a reason, a product or both"));
    }
    Ok(store.add_severity_override(&new, actor, now_ms).await?)
}

/// What a suppression covers and who answers for it.
#[derive(Debug, Clone, Default)]
pub struct SuppressionRequest {
    pub reason: String,
    pub product: String,
    pub group: String,
    /// An agent id, or `""` for any host.
    pub agent_id: String,
    pub owner: String,
    pub note: String,
    pub expires_at_ms: i64,
}

/// Adds a suppression: it needs an owner, an expiry in the future (at most a year away) and at
/// least one of reason, product, group or host (nothing suppresses everything).
pub async fn suppress(
    store: &Store,
    request: &SuppressionRequest,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<Suppression, PolicyError> {
    let agent_id = if request.agent_id.is_empty() {
        String::new()
    } else {
        uuid::Uuid::try_parse(&request.agent_id)
            .map_err(|_| invalid("host must be an agent id (UUID)"))?
            .to_string()
    };
    let new = NewSuppression {
        reason: reason_id(&request.reason, true)?,
        product: product_id("product", &request.product, true)?,
        group: text("group", &request.group, MAX_GROUP, true)?,
        agent_id,
        owner: text("owner", &request.owner, MAX_OWNER, false)?,
        note: text("note", &request.note, MAX_NOTE, true)?,
        expires_at_ms: request.expires_at_ms,
    };
    if new.reason.is_empty()
        && new.product.is_empty()
        && new.group.is_empty()
        && new.agent_id.is_empty()
    {
        return Err(invalid(
            "a suppression names a reason, a product, a group or a host",
        ));
    }
    if new.expires_at_ms <= now_ms || new.expires_at_ms - now_ms > MAX_SUPPRESSION_MS {
        return Err(invalid(
            "a suppression expires in the future, at most 366 days from now",
        ));
    }
    Ok(store.add_suppression(&new, actor, now_ms).await?)
}

/// Sets a numeric policy setting within its bounds.
pub async fn set_setting(
    store: &Store,
    name: &str,
    value: i64,
    actor: &PolicyActor,
    now_ms: i64,
) -> Result<(), PolicyError> {
    let Some(spec) = SETTING_SPECS.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = SETTING_SPECS.iter().map(|s| s.name).collect();
        return Err(invalid(format!(
            "setting must be one of {}",
            known.join(", ")
        )));
    };
    if !(spec.min..=spec.max).contains(&value) {
        return Err(invalid(format!(
            "{name} must be from {} to {}",
            spec.min, spec.max
        )));
    }
    Ok(store.set_policy_setting(name, value, actor, now_ms).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_texts_are_checked() {
        assert!(product_id("product", "openai.chatgpt", false).is_ok());
        assert!(product_id("product", "", true).is_ok());
        for bad in ["", "OpenAI", "a b", "x;DROP", &"a".repeat(129), "é"] {
            assert!(product_id("product", bad, false).is_err(), "{bad:?}");
        }
        assert!(text("note", "ok", 10, false).is_ok());
        assert!(text("note", "a\u{0}b", 10, false).is_err());
        assert!(text("note", "", 10, false).is_err());
        assert!(text("note", "12345678901", 10, false).is_err());
        assert_eq!(reason_id("new_product", false).unwrap(), "new_product");
        assert!(reason_id("nope", true).is_err());
        assert!(severity("urgent").is_err());
    }

    #[test]
    fn categories_come_from_the_catalog() {
        assert_eq!(catalog_category("openai.chatgpt"), Some("chat_app"));
        assert_eq!(catalog_category("no.such-product"), None);
    }
}
