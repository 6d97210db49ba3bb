//! Enrollment tokens: creation (the secret is shown once; only its SHA-256 is stored).

use time::OffsetDateTime;

use crate::identity::{CertificateAuthority, EnrollmentToken, unix_ms};
use crate::store::{NewEnrollmentToken, Store};

/// Creates and stores an enrollment token for `group`; returns its text form.
pub async fn create(
    store: &Store,
    ca: &CertificateAuthority,
    group: &str,
    lifetime: Option<time::Duration>,
    max_uses: Option<u32>,
    created_by: &str,
) -> anyhow::Result<String> {
    let token = EnrollmentToken::generate(&ca.pin());
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
