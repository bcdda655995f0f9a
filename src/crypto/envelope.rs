//! Sealing secrets at rest: AES-256-GCM with a fresh random 96-bit nonce per write, the data
//! key's id in a header, and associated data binding the ciphertext to its table, row and
//! application — a ciphertext copied to another row does not open.
//!
//! Layout: `[version=1][key id: u32 BE][nonce: 12][ciphertext ‖ tag: 16]`.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;

/// Why a ciphertext did not open. Deliberately coarse: the caller learns nothing useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Malformed,
    UnknownKey(u32),
    /// Wrong key, wrong row, or tampered bytes.
    Rejected,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Malformed => f.write_str("sealed value is malformed"),
            OpenError::UnknownKey(id) => write!(f, "sealed with unknown data key {id}"),
            OpenError::Rejected => f.write_str("sealed value does not authenticate"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Sealing failed: only possible for inputs beyond AES-GCM's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealError;

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value too large to seal")
    }
}

impl std::error::Error for SealError {}

/// What a sealed value is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub table: &'a str,
    pub row_id: Uuid,
    pub application_id: Uuid,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "keyway/v1|{}|{}|{}",
            self.table, self.row_id, self.application_id
        )
        .into_bytes()
    }
}

/// 32 secret bytes, wiped on drop, never printed.
#[derive(Clone)]
pub struct KeyBytes(Zeroizing<[u8; 32]>);

impl KeyBytes {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        Self::new(bytes)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte slice is always a valid AES-256 key.
        Aes256Gcm::new((&*self.0).into())
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(***)")
    }
}

/// The data keys this process can use: the current one seals, any of them opens.
pub struct Keyring {
    current: u32,
    ciphers: BTreeMap<u32, Aes256Gcm>,
}

impl Keyring {
    /// `keys` must contain `current`.
    pub fn new(current: u32, keys: impl IntoIterator<Item = (u32, KeyBytes)>) -> Option<Self> {
        let ciphers: BTreeMap<u32, Aes256Gcm> =
            keys.into_iter().map(|(id, k)| (id, k.cipher())).collect();
        ciphers
            .contains_key(&current)
            .then_some(Self { current, ciphers })
    }

    pub fn current_key_id(&self) -> u32 {
        self.current
    }

    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ciphers.keys().copied()
    }

    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Result<Vec<u8>, SealError> {
        let cipher = self.ciphers.get(&self.current).ok_or(SealError)?;
        seal_with(self.current, cipher, plaintext, &binding.aad())
    }

    pub fn open(
        &self,
        sealed: &[u8],
        binding: Binding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let key_id = sealed_key_id(sealed).ok_or(OpenError::Malformed)?;
        let cipher = self
            .ciphers
            .get(&key_id)
            .ok_or(OpenError::UnknownKey(key_id))?;
        open_with(cipher, sealed, &binding.aad())
    }
}

/// The data key a sealed value names, if it is well-formed.
pub fn sealed_key_id(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
        return None;
    }
    Some(u32::from_be_bytes([
        sealed[1], sealed[2], sealed[3], sealed[4],
    ]))
}

/// Wraps a data key under the master key; bound to the data key's id.
pub fn wrap_key(master: &KeyBytes, key_id: u32, key: &KeyBytes) -> Result<Vec<u8>, SealError> {
    seal_with(0, &master.cipher(), key.expose(), &wrap_aad(key_id))
}

pub fn unwrap_key(master: &KeyBytes, key_id: u32, wrapped: &[u8]) -> Result<KeyBytes, OpenError> {
    let plain = open_with(&master.cipher(), wrapped, &wrap_aad(key_id))?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| OpenError::Malformed)?;
    Ok(KeyBytes::new(bytes))
}

fn wrap_aad(key_id: u32) -> Vec<u8> {
    format!("keyway/v1|data-key|{key_id}").into_bytes()
}

fn seal_with(
    key_id: u32,
    cipher: &Aes256Gcm,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce = Nonce::generate();
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&nonce);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError)?;
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn open_with(
    cipher: &Aes256Gcm,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
        return Err(OpenError::Malformed);
    }
    let nonce = Nonce::try_from(&sealed[5..HEADER_LEN]).map_err(|_| OpenError::Malformed)?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed[HEADER_LEN..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| OpenError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(row: Uuid) -> Binding<'static> {
        Binding {
            table: "connections",
            row_id: row,
            application_id: Uuid::nil(),
        }
    }

    fn ring() -> Keyring {
        Keyring::new(7, [(7, KeyBytes::generate())]).unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let ring = ring();
        let row = Uuid::now_v7();
        let a = ring.seal(b"token", binding(row)).unwrap();
        let b = ring.seal(b"token", binding(row)).unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(sealed_key_id(&a), Some(7));
        assert_eq!(ring.open(&a, binding(row)).unwrap().as_slice(), b"token");
        assert!(!a.windows(5).any(|w| w == b"token"));
    }

    #[test]
    fn refuses_other_rows_flipped_bytes_and_unknown_keys() {
        let ring = ring();
        let row = Uuid::now_v7();
        let sealed = ring.seal(b"token", binding(row)).unwrap();
        assert_eq!(
            ring.open(&sealed, binding(Uuid::now_v7())).unwrap_err(),
            OpenError::Rejected
        );
        for i in 5..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(ring.open(&bad, binding(row)).is_err(), "byte {i}");
        }
        let other = Keyring::new(8, [(8, KeyBytes::generate())]).unwrap();
        assert_eq!(
            other.open(&sealed, binding(row)).unwrap_err(),
            OpenError::UnknownKey(7)
        );
        assert_eq!(
            ring.open(b"short", binding(row)).unwrap_err(),
            OpenError::Malformed
        );
    }

    #[test]
    fn wrapped_keys_open_only_under_their_master_and_id() {
        let master = KeyBytes::generate();
        let key = KeyBytes::generate();
        let wrapped = wrap_key(&master, 3, &key).unwrap();
        assert_eq!(
            unwrap_key(&master, 3, &wrapped).unwrap().expose(),
            key.expose()
        );
        assert!(unwrap_key(&master, 4, &wrapped).is_err());
        assert!(unwrap_key(&KeyBytes::generate(), 3, &wrapped).is_err());
    }
}
