//! Pseudonymised reports: users and hosts replaced by stable keyed hashes, HMAC-SHA256 under a
//! 32-byte key kept in the data directory (`report-pseudonym.key`, 0600, created on first use).
//! The same name gives the same pseudonym in every report made with that key, so trends can be
//! followed without names; without the key a pseudonym cannot be reversed by trying names.

use std::io::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// File name of the key in the data directory.
pub const KEY_FILE: &str = "report-pseudonym.key";

/// Maps users and hosts to what the report shows.
#[derive(Clone)]
pub struct Namer {
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Namer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namer")
            .field("pseudonymized", &self.key.is_some())
            .finish()
    }
}

impl Namer {
    /// Real names.
    pub fn plain() -> Namer {
        Namer { key: None }
    }

    /// Pseudonyms under `key`.
    pub fn keyed(key: [u8; 32]) -> Namer {
        Namer { key: Some(key) }
    }

    pub fn is_pseudonymized(&self) -> bool {
        self.key.is_some()
    }

    /// `host-` + 12 hex digits of HMAC(key, "host\0" + name), or the name itself.
    pub fn host(&self, name: &str) -> String {
        self.name("host", name)
    }

    /// `user-` + 12 hex digits of HMAC(key, "user\0" + name), or the name itself.
    pub fn user(&self, name: &str) -> String {
        self.name("user", name)
    }

    fn name(&self, kind: &str, name: &str) -> String {
        let Some(key) = &self.key else {
            return name.to_owned();
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            // HMAC accepts any key length; this branch cannot be taken.
            return format!("{kind}-?");
        };
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(name.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{kind}-{}", hex::encode(&digest[..6]))
    }
}

/// Reads the key from `data_dir`, creating it (32 random bytes, mode 0600) when missing.
pub fn load_or_create_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    file.write_all(&key)?;
                    file.sync_all()?;
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_key(data_dir)
                }
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_typed() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_key(dir.path()).unwrap();
        assert_eq!(load_or_create_key(dir.path()).unwrap(), key);
        let namer = Namer::keyed(key);
        assert_eq!(namer.host("laptop-1"), namer.host("laptop-1"));
        assert_ne!(namer.host("laptop-1"), namer.user("laptop-1"));
        assert!(namer.user("alice").starts_with("user-"));
        assert_eq!(namer.user("alice").len(), 5 + 12);
        assert_ne!(
            Namer::keyed([1; 32]).user("alice"),
            Namer::keyed([2; 32]).user("alice")
        );
        assert_eq!(Namer::plain().host("laptop-1"), "laptop-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
