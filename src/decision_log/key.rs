//! The decision log's key, and the keyed digest (HMAC-SHA256, RFC 2104) of a request's
//! arguments made with it.
//!
//! An unkeyed digest of arguments that carry a password gives the password away to anyone
//! with the log and a word list: they hash each guess with the rest of the (guessable)
//! arguments and compare. Keyed, a digest can be recomputed only by whoever holds the key,
//! which stays in a file only authhost's user can read, apart from the log.

use std::fs::OpenOptions;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Key bytes: 256 bits, SHA-256's own output size.
const KEY_BYTES: usize = 32;
/// SHA-256's block size, which HMAC pads the key to.
const BLOCK: usize = 64;

/// A per-deployment secret key for [`ArgsDigest`]s. Its `Debug` shows no key material.
#[derive(Clone)]
pub struct DigestKey {
    /// SHA-256 with the inner padded key already absorbed (HMAC's `K ⊕ ipad`).
    inner: Sha256,
    /// SHA-256 with the outer padded key already absorbed (`K ⊕ opad`).
    outer: Sha256,
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(…)")
    }
}

impl DigestKey {
    /// A key from its bytes (a key longer than a block is hashed first, as HMAC says).
    pub fn from_bytes(key: &[u8]) -> DigestKey {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut hasher = Sha256::new();
            hasher.update(padded.map(|k| k ^ byte));
            hasher
        };
        DigestKey {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// The key in `path`, 64 hex digits; when the file is missing, a new random key is
    /// written there first, in a file of mode 0600.
    ///
    /// # Failure
    ///
    /// The file cannot be read or created, does not hold 64 hex digits, or can be read by
    /// other users than its owner (a key others can read protects nothing): the message
    /// names the file and what to do.
    pub fn load_or_create(path: impl AsRef<Path>) -> io::Result<DigestKey> {
        let path = path.as_ref();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        match create(path) {
            Ok(key) => return Ok(key),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(named(e)),
        }
        let mut file = OpenOptions::new().read(true).open(path).map_err(named)?;
        let mode = file.metadata().map_err(named)?.mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: the decision log's key can be read by other users (mode {:04o}); \
                     chmod 600 it, or remove it to make a new one",
                    path.display(),
                    mode & 0o7777
                ),
            ));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(named)?;
        let key = from_hex(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a decision log key (64 hex digits expected); remove it to make a \
                     new one",
                    path.display()
                ),
            )
        })?;
        Ok(DigestKey::from_bytes(&key))
    }

    /// The keyed digest of `args`: HMAC-SHA256 over each argument's length (u64,
    /// little-endian) then its bytes, so that `["ab","c"]` and `["a","bc"]` differ.
    pub fn digest(&self, args: &[String]) -> ArgsDigest {
        let mut inner = self.inner.clone();
        for arg in args {
            inner.update((arg.len() as u64).to_le_bytes());
            inner.update(arg.as_bytes());
        }
        ArgsDigest(self.hmac_finish(inner))
    }

    fn hmac_finish(&self, inner: Sha256) -> [u8; 32] {
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// Writes a new random key to `path`, which must not exist (`AlreadyExists` otherwise).
fn create(path: &Path) -> io::Result<DigestKey> {
    let mut key = [0u8; KEY_BYTES];
    crate::random::fill(&mut key)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut text = to_hex(&key);
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written key would be refused at the next start: leave none.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    log::info!("created the decision log key {}", path.display());
    Ok(DigestKey::from_bytes(&key))
}

/// A request's arguments' keyed digest ([`DigestKey::digest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgsDigest([u8; 32]);

impl ArgsDigest {
    /// The digest in lowercase hex.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn from_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// HMAC over raw bytes, to check against the RFC's vectors.
    fn hmac(key: &DigestKey, message: &[u8]) -> String {
        let mut inner = key.inner.clone();
        inner.update(message);
        to_hex(&key.hmac_finish(inner))
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 2.
        assert_eq!(
            hmac(&DigestKey::from_bytes(&[0x0b; 20]), b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac(
                &DigestKey::from_bytes(b"Jefe"),
                b"what do ya want for nothing?"
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn digests_are_keyed_and_length_prefixed() {
        let key = DigestKey::from_bytes(&[7; 32]);
        let args = ["ab".to_string(), "c".to_string()];
        assert_ne!(key.digest(&args), key.digest(&["a".into(), "bc".into()]));
        assert_ne!(
            key.digest(&args),
            DigestKey::from_bytes(&[8; 32]).digest(&args)
        );
        let mut message = Vec::new();
        message.extend(2u64.to_le_bytes());
        message.extend(b"ab");
        message.extend(1u64.to_le_bytes());
        message.extend(b"c");
        assert_eq!(key.digest(&args).to_hex(), hmac(&key, &message));
        let unkeyed = to_hex(&Sha256::digest(&message));
        assert_ne!(key.digest(&args).to_hex(), unkeyed);
    }

    #[test]
    fn a_missing_key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let made = DigestKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(from_hex(text.trim()).is_some(), "{text}");
        let again = DigestKey::load_or_create(&path).unwrap();
        let args = ["x".to_string()];
        assert_eq!(made.digest(&args), again.digest(&args));
        let other = DigestKey::load_or_create(dir.path().join("other.key")).unwrap();
        assert_ne!(
            made.digest(&args),
            other.digest(&args),
            "each key is random"
        );
        assert_eq!(format!("{made:?}"), "DigestKey(…)");
    }

    #[test]
    fn a_key_others_can_read_or_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        DigestKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = DigestKey::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        let e = DigestKey::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        assert!(e.to_string().contains("log.key"), "{e}");
    }
}
