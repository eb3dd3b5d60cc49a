//! `authhost.hash_password` and `authhost.verify_password`: password hashes for policies.
//!
//! New hashes are argon2id PHC strings with OWASP's minimum parameters
//! (m = 19456 KiB, t = 2, p = 1) and a random 16-byte salt. Verification accepts argon2i,
//! argon2d and argon2id PHC strings and bcrypt's `$2a$`, `$2b$` and `$2y$` forms, so users
//! imported from another system keep their passwords. Both compare in constant time (the
//! RustCrypto `password-hash` output comparison and bcrypt's `subtle::ct_eq`).
//!
//! (Not run as a doctest: the module is internal; the unit tests below check the same.)
//!
//! ```ignore
//! use authhost::script_api::password::{hash_password, verify_password};
//!
//! let hash = hash_password(b"correct horse")?;
//! assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
//! assert!(verify_password(&hash, b"correct horse")?);
//! assert!(!verify_password(&hash, b"wrong")?);
//! // A published bcrypt test vector (jBCrypt): the password "abc".
//! let bcrypt = "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i";
//! assert!(verify_password(bcrypt, b"abc")?);
//! # Ok::<(), authhost::script_api::password::PasswordError>(())
//! ```
//!
//! # Failure
//!
//! A hash that is not a well-formed argon2 or bcrypt string is an error, never `false`: a
//! policy should not quietly refuse every user because its hash column is corrupt. So is a
//! hash whose cost parameters pass [`MAX_ARGON2_M_KIB`], [`MAX_ARGON2_T`], [`MAX_ARGON2_P`]
//! or [`MAX_BCRYPT_COST`]: such a hash would hold a worker for minutes or ask for more memory
//! than the machine has.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Argon2 memory cost of new hashes, in KiB (OWASP's minimum for argon2id).
pub const HASH_M_KIB: u32 = 19_456;
/// Argon2 iterations of new hashes (OWASP's minimum with 19 MiB).
pub const HASH_T: u32 = 2;
/// Argon2 parallelism of new hashes.
pub const HASH_P: u32 = 1;

/// The largest argon2 memory cost a stored hash may ask for, in KiB (1 GiB).
pub const MAX_ARGON2_M_KIB: u32 = 1 << 20;
/// The most argon2 iterations a stored hash may ask for.
pub const MAX_ARGON2_T: u32 = 64;
/// The most argon2 lanes a stored hash may ask for.
pub const MAX_ARGON2_P: u32 = 64;
/// The largest bcrypt cost a stored hash may ask for (2^16 rounds take seconds).
pub const MAX_BCRYPT_COST: u32 = 16;

/// Why a password could not be hashed or checked.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a well-formed argon2 PHC string or bcrypt hash.
    #[error("malformed password hash: {0}")]
    Malformed(String),
    /// The stored hash asks for more work than this host allows.
    #[error("password hash too costly: {0}")]
    TooCostly(String),
    /// Hashing failed (no randomness for the salt, say).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

mod memory;

use memory::Blocks;

/// Argon2 working memory kept per thread, at most this many 1 KiB blocks (64 MiB).
const KEPT_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// Argon2's working memory (19 MiB for new hashes), reused by each thread's hashes:
    /// allocating it afresh costs thousands of page faults per hash, about as much time as
    /// the hashing itself, and makes threads queue on the kernel's memory-map lock.
    static BLOCKS: RefCell<Option<Blocks>> = const { RefCell::new(None) };
}

/// Runs argon2 with this thread's kept working memory.
fn argon2_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon2.params().block_count();
    BLOCKS.with(|kept| match kept.try_borrow_mut() {
        Ok(mut kept) => {
            if kept.as_ref().is_none_or(|blocks| blocks.len() < needed) {
                // Unmap the smaller buffer before mapping the larger: never both at once.
                *kept = None;
                *kept = Blocks::new(needed);
            }
            let Some(blocks) = kept.as_mut() else {
                return Err(argon2::Error::MemoryTooLittle);
            };
            let result =
                argon2.hash_password_into_with_memory(password, salt, out, blocks.first(needed));
            if blocks.len() > KEPT_BLOCKS {
                *kept = None;
            }
            result
        }
        // Only if hashing were re-entered on this thread: use memory of its own.
        Err(_) => argon2.hash_password_into_with_memory(
            password,
            salt,
            out,
            vec![Block::default(); needed],
        ),
    })
}

/// Hashes `password` as an argon2id PHC string (m = 19456 KiB, t = 2, p = 1, random salt).
///
/// # Failure
///
/// Only when the system cannot provide randomness for the salt.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hashing(e.to_string());
    let params = Params::new(HASH_M_KIB, HASH_T, HASH_P, None).map_err(|e| failed(&e))?;
    let salt = argon2::password_hash::try_generate_salt().map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2_into(&hasher, password, &salt, &mut out).map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

/// Checks `password` against `hash`: an argon2i/argon2d/argon2id PHC string or a bcrypt
/// `$2a$`/`$2b$`/`$2y$` hash. `Ok(false)` means the password is wrong.
///
/// # Failure
///
/// A malformed hash, or one whose cost passes this module's limits.
pub fn verify_password(hash: &str, password: &[u8]) -> Result<bool, PasswordError> {
    if hash.starts_with("$argon2") {
        verify_argon2(hash, password)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        verify_bcrypt(hash, password)
    } else {
        Err(PasswordError::Malformed(format!(
            "expected an argon2 ($argon2id$…) or bcrypt ($2b$…) hash, got {}",
            describe(hash)
        )))
    }
}

fn verify_argon2(hash: &str, password: &[u8]) -> Result<bool, PasswordError> {
    let malformed =
        |e: &dyn std::fmt::Display| PasswordError::Malformed(format!("{e} in {}", describe(hash)));
    let parsed = PasswordHash::new(hash).map_err(|e| malformed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|_| malformed(&"unknown argon2 variant"))?;
    let version = match parsed.version {
        Some(number) => Version::try_from(number).map_err(|e| malformed(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    if params.m_cost() > MAX_ARGON2_M_KIB
        || params.t_cost() > MAX_ARGON2_T
        || params.p_cost() > MAX_ARGON2_P
    {
        return Err(PasswordError::TooCostly(format!(
            "m={} KiB, t={}, p={} (at most m={MAX_ARGON2_M_KIB}, t={MAX_ARGON2_T}, p={MAX_ARGON2_P})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        )));
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(malformed(&"no salt or no hash"));
    };
    let mut out = vec![0u8; expected.len()];
    argon2_into(
        &Argon2::new(algorithm, version, params),
        password,
        salt,
        &mut out,
    )
    .map_err(|e| malformed(&e))?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| malformed(&e))? == *expected)
}

fn verify_bcrypt(hash: &str, password: &[u8]) -> Result<bool, PasswordError> {
    // `$2b$NN$` + 53 characters; read the cost before bcrypt spends it.
    let cost = hash
        .get(4..6)
        .and_then(|digits| digits.parse::<u32>().ok())
        .ok_or_else(|| PasswordError::Malformed(format!("no bcrypt cost in {}", describe(hash))))?;
    if cost > MAX_BCRYPT_COST {
        return Err(PasswordError::TooCostly(format!(
            "bcrypt cost {cost} (at most {MAX_BCRYPT_COST})"
        )));
    }
    bcrypt::verify(password, hash)
        .map_err(|e| PasswordError::Malformed(format!("{e} in {}", describe(hash))))
}

/// A hash for an error message: its first characters only, so a message never carries a
/// whole credential.
fn describe(hash: &str) -> String {
    const SHOWN: usize = 12;
    match hash.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &hash[..end]),
        None => format!("{hash:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_are_argon2id_with_owasp_parameters() {
        let hash = hash_password(b"pw").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, b"pw").unwrap());
        assert!(!verify_password(&hash, b"pW").unwrap());
        // Salted: the same password hashes differently each time.
        assert_ne!(hash, hash_password(b"pw").unwrap());
    }

    #[test]
    fn a_hash_from_the_reference_implementation_verifies() {
        // The argon2 reference implementation's test vector (argon2 CLI, "password", salt
        // "somesalt", t=2, m=65536, p=1) and one by argon2-cffi (libargon2) for "pw".
        let reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(verify_password(reference, b"password").unwrap());
        assert!(!verify_password(reference, b"Password").unwrap());
        let argon2_cffi = "$argon2id$v=19$m=19456,t=2,p=1$IL2cvlQJg7OGhMCrRY7aDQ$QcIDLBmyGuenHCYYlK/nonAghjkMcXoXOh1smSdFd6M";
        assert!(verify_password(argon2_cffi, b"pw7").unwrap());
        assert!(!verify_password(argon2_cffi, b"pw8").unwrap());
    }

    #[test]
    fn kept_memory_gives_the_same_answers_after_larger_and_smaller_hashes() {
        // One thread, so every hash reuses the memory the one before it left behind.
        let large = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        let small = "$argon2id$v=19$m=19456,t=2,p=1$IL2cvlQJg7OGhMCrRY7aDQ$QcIDLBmyGuenHCYYlK/nonAghjkMcXoXOh1smSdFd6M";
        for (hash, password) in [(small, "pw7"), (large, "password"), (small, "pw7")] {
            assert!(
                verify_password(hash, password.as_bytes()).unwrap(),
                "{hash}"
            );
        }
    }

    #[test]
    fn argon2i_and_argon2d_verify() {
        for algorithm in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(64, 1, 1, None).unwrap();
            let hash = argon2::PasswordHasher::hash_password(
                &Argon2::new(algorithm, Version::V0x13, params),
                b"secret",
            )
            .unwrap()
            .to_string();
            assert!(verify_password(&hash, b"secret").unwrap(), "{hash}");
            assert!(!verify_password(&hash, b"other").unwrap(), "{hash}");
        }
    }

    #[test]
    fn published_bcrypt_vectors_verify() {
        // jBCrypt's test vectors; libxcrypt's crypt(3) gives the same strings.
        let vectors = [
            (
                "",
                "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s.",
            ),
            (
                "a",
                "$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe",
            ),
            (
                "abc",
                "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i",
            ),
        ];
        for (password, hash) in vectors {
            assert!(
                verify_password(hash, password.as_bytes()).unwrap(),
                "{hash}"
            );
            assert!(!verify_password(hash, b"nope").unwrap(), "{hash}");
        }
    }

    #[test]
    fn malformed_hashes_are_errors_not_false() {
        for hash in [
            "",
            "plaintext",
            "$argon2id$v=19$m=19456",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!$???",
            "$argon2x$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$2b$10$short",
            "$2b$xx$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3Xu",
        ] {
            match verify_password(hash, b"pw") {
                Err(e @ PasswordError::Malformed(_)) => {
                    assert!(
                        e.to_string().starts_with("malformed password hash: "),
                        "{e}"
                    )
                }
                other => panic!("{hash:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ruinous_costs_are_refused_before_any_work() {
        let huge_memory = "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            verify_password(huge_memory, b"pw"),
            Err(PasswordError::TooCostly(_))
        ));
        let slow_bcrypt = "$2b$31$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3Xu";
        assert!(matches!(
            verify_password(slow_bcrypt, b"pw"),
            Err(PasswordError::TooCostly(_))
        ));
    }

    #[test]
    fn error_messages_do_not_carry_the_whole_hash() {
        let hash = "$2b$10$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3X";
        let message = verify_password(hash, b"pw").unwrap_err().to_string();
        assert!(!message.contains("DdDut3X"), "{message}");
    }
}
