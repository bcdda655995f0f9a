//! Operator passwords: argon2id PHC strings. Hashing is slow on purpose, so callers on an
//! async path run it in `spawn_blocking`.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use super::Secret;

pub fn hash_password(password: &Secret) -> anyhow::Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
    Ok(hash.to_string())
}

pub fn verify_password(password: &Secret, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let phc = hash_password(&Secret::new("correct horse")).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&Secret::new("correct horse"), &phc));
        assert!(!verify_password(&Secret::new("correct horsf"), &phc));
        assert!(!verify_password(&Secret::new("x"), "not a hash"));
    }
}
