//! Password hashes: argon2id in the PHC string format (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
//! The string carries its algorithm and parameters, so a hash made with older settings still
//! verifies, and login replaces it with one made with the current settings.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

/// Argon2id with fixed parameters.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: Params,
}

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wrong password, or a stored value that is not a hash we know.
    Wrong,
    /// Right, and the stored hash uses the current settings.
    Right,
    /// Right, but the stored hash should be replaced by one with the current settings.
    RightButOutdated,
}

impl Hasher {
    /// The parameters the app runs with: OWASP's minimum memory and passes for argon2id
    /// (19,456 KiB, 2 passes), in 2 lanes that argon2's `parallel` feature fills on two
    /// threads. Lanes split the same memory, so a guess costs an attacker what it did with
    /// OWASP's 1 lane, and a hash costs us about 10 ms here instead of 20.
    pub fn standard() -> Self {
        Self::new(19_456, 2, 2).expect("valid parameters")
    }

    /// Memory in KiB, passes, lanes.
    ///
    /// # Errors
    /// When the parameters are outside argon2's bounds.
    pub fn new(memory_kib: u32, passes: u32, lanes: u32) -> conveyor_web::fail::Result<Self> {
        let params = Params::new(memory_kib, passes, lanes, None)
            .map_err(|e| format!("argon2 parameters: {e}"))?;
        Ok(Self { params })
    }

    /// Cheap parameters for tests, where hashing cost only slows the suite.
    pub fn for_tests() -> Self {
        Self::new(1024, 1, 1).expect("valid parameters")
    }

    fn argon2(&self) -> Argon2<'_> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A new hash of `password` with a random salt.
    pub fn hash(&self, password: &str) -> String {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        self.argon2()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .expect("argon2 accepts any password with valid parameters")
            .to_string()
    }

    /// Checks `password` against a stored hash.
    pub fn verify(&self, password: &str, stored: &str) -> Verdict {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verdict::Wrong;
        };
        // The parameters come from the stored string, not from `self`.
        if Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return Verdict::Wrong;
        }
        let current = parsed.algorithm.as_str() == "argon2id"
            && parsed.version == Some(Version::V0x13.into())
            && Params::try_from(&parsed).is_ok_and(|p| {
                p.m_cost() == self.params.m_cost()
                    && p.t_cost() == self.params.t_cost()
                    && p.p_cost() == self.params.p_cost()
            });
        if current {
            Verdict::Right
        } else {
            Verdict::RightButOutdated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_old_parameters_ask_for_an_upgrade() {
        let old = Hasher::new(512, 1, 1).unwrap();
        let new = Hasher::for_tests();
        let stored = old.hash("s3cret \"'\\");
        assert!(stored.starts_with("$argon2id$v=19$m=512,t=1,p=1$"));
        assert_eq!(old.verify("s3cret \"'\\", &stored), Verdict::Right);
        assert_eq!(
            new.verify("s3cret \"'\\", &stored),
            Verdict::RightButOutdated
        );
        assert_eq!(new.verify("wrong", &stored), Verdict::Wrong);
        assert_eq!(new.verify("anything", "not a hash"), Verdict::Wrong);
        assert_ne!(new.hash("same"), new.hash("same"), "salts differ");
    }
}
