//! Enrollment tokens: creation (the secret is shown once; only its SHA-256 is stored). The CLI
//! (`token create`) and the dashboard's tokens page both create them here, with the same checks.

use time::OffsetDateTime;

use crate::identity::{CertificateAuthority, EnrollmentToken, unix_ms};
use crate::store::{NewEnrollmentToken, Store, StoreError};

/// Longest group name a token may carry.
pub const MAX_GROUP: usize = 128;

/// Why a token was not created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks what a new token is asked to carry: a group of 1 to 128 bytes without control
/// characters, and at least one use when uses are limited.
pub fn check(group: &str, max_uses: Option<u32>) -> Result<(), TokenError> {
    if group.is_empty() || group.len() > MAX_GROUP || group.chars().any(char::is_control) {
        return Err(TokenError::Invalid(format!(
            "the group must be 1 to {MAX_GROUP} bytes without control characters"
        )));
    }
    if max_uses == Some(0) {
        return Err(TokenError::Invalid(
            "max uses must be at least 1 (or unlimited)".to_owned(),
        ));
    }
    Ok(())
}

/// A token lifetime: `30m`, `12h`, `7d` (positive) or `never` (`None`).
pub fn parse_lifetime(text: &str) -> Result<Option<time::Duration>, String> {
    if text == "never" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number
        .parse()
        .map_err(|_| format!("expiry `{text}`: use e.g. 30m, 12h, 7d or never"))?;
    let lifetime = match unit {
        "m" => time::Duration::minutes(number),
        "h" => time::Duration::hours(number),
        "d" => time::Duration::days(number),
        _ => return Err(format!("expiry `{text}`: use e.g. 30m, 12h, 7d or never")),
    };
    if number <= 0 {
        return Err(format!("expiry `{text}` must be positive"));
    }
    Ok(Some(lifetime))
}

/// Creates and stores an enrollment token for `group`; returns its text form.
pub async fn create(
    store: &Store,
    ca: &CertificateAuthority,
    group: &str,
    lifetime: Option<time::Duration>,
    max_uses: Option<u32>,
    created_by: &str,
) -> anyhow::Result<String> {
    Ok(create_with_pin(store, &ca.pin(), group, lifetime, max_uses, created_by).await?)
}

/// Like [`create`], for a holder of the CA's pin only (the dashboard): the token names the pin so
/// that the agent can check the collector it enrolls with.
pub async fn create_with_pin(
    store: &Store,
    ca_pin: &str,
    group: &str,
    lifetime: Option<time::Duration>,
    max_uses: Option<u32>,
    created_by: &str,
) -> Result<String, TokenError> {
    check(group, max_uses)?;
    let token = EnrollmentToken::generate(ca_pin);
    let now = OffsetDateTime::now_utc();
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: token.token_id.clone(),
            secret_sha256: token.secret_sha256(),
            group: group.to_owned(),
            expires_at_ms: lifetime.map(|lifetime| unix_ms(now + lifetime)),
            max_uses,
            created_at_ms: unix_ms(now),
            created_by: created_by.to_owned(),
        })
        .await?;
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_uses_and_lifetimes_are_checked() {
        assert!(check("laptops", None).is_ok());
        assert!(check("laptops", Some(3)).is_ok());
        for (group, uses) in [("", None), ("a\nb", None), ("laptops", Some(0))] {
            assert!(check(group, uses).is_err(), "{group:?} {uses:?}");
        }
        assert!(check(&"g".repeat(129), None).is_err());
        assert_eq!(parse_lifetime("never"), Ok(None));
        assert_eq!(parse_lifetime("7d"), Ok(Some(time::Duration::days(7))));
        for bad in ["", "0d", "-1h", "7w", "d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
