//! The store's error type. sqlx errors are mapped here, once: constraint violations become domain
//! variants, everything else becomes `Database`/`Unavailable`. Display never shows SQL text or the
//! database's own message (which can name tables, constraints or values); those go to DEBUG logs.

use tracing::debug;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database url must start with sqlite:// or postgres://")]
    InvalidUrl,
    /// The database could not be opened; `reason` is the driver's connection error (no SQL).
    #[error("cannot connect to the database: {reason}")]
    Connect { reason: String },
    /// A migration failed; `reason` names the migration, not its SQL.
    #[error("cannot migrate the database: {reason}")]
    Migrate { reason: String },
    #[error("enrollment token unknown")]
    TokenUnknown,
    #[error("enrollment token expired")]
    TokenExpired,
    #[error("enrollment token used up")]
    TokenUsedUp,
    #[error("enrollment token revoked")]
    TokenRevoked,
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    #[error("{entity} already exists")]
    Conflict { entity: &'static str },
    #[error("invalid input: {what}")]
    Invalid { what: &'static str },
    /// A stored value could not be read back (a column holds something this version cannot parse).
    #[error("stored {what} is not valid")]
    Corrupt { what: &'static str },
    /// The database did not answer in time (pool exhausted, connection lost).
    #[error("database unavailable")]
    Unavailable,
    #[error("database error")]
    Database,
}

impl StoreError {
    pub(crate) fn connect(error: sqlx::Error) -> StoreError {
        debug!(error = %error, "database connection failed");
        let reason = match &error {
            sqlx::Error::Io(io) => io.to_string(),
            sqlx::Error::Tls(tls) => format!("tls: {tls}"),
            sqlx::Error::Configuration(config) => format!("configuration: {config}"),
            sqlx::Error::PoolTimedOut => "timed out".to_owned(),
            // Authentication failures and missing databases arrive as server errors; their message
            // is what an operator needs and carries no SQL.
            sqlx::Error::Database(database) => database.message().to_owned(),
            _ => "database error".to_owned(),
        };
        StoreError::Connect { reason }
    }

    pub(crate) fn migrate(error: sqlx::migrate::MigrateError) -> StoreError {
        debug!(error = %error, "database migration failed");
        let reason = match &error {
            sqlx::migrate::MigrateError::Execute(_)
            | sqlx::migrate::MigrateError::ExecuteMigration(..) => {
                "a migration failed to run".to_owned()
            }
            // Version mismatches and dirty states are described without SQL by sqlx.
            other => other.to_string(),
        };
        StoreError::Migrate { reason }
    }

    /// Maps an error of a statement that writes one `entity`: a unique violation means it exists.
    pub(crate) fn entity(entity: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |error| match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                debug!(error = %error, entity, "unique violation");
                StoreError::Conflict { entity }
            }
            _ => StoreError::from(error),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        debug!(error = %error, "database error");
        match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                StoreError::Conflict { entity: "record" }
            }
            sqlx::Error::Database(database) if database.is_foreign_key_violation() => {
                StoreError::NotFound {
                    entity: "referenced record",
                }
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt { what: "value" }
            }
            _ => StoreError::Database,
        }
    }
}
