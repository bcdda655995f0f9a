//! Everything that touches secret material: the master key, the keyring and AES-GCM envelope,
//! bearer-secret generation and hashing, password hashing, and the `Secret` string type.
//! Nothing outside this module handles raw key bytes.

pub mod envelope;
pub mod master;
pub mod password;
mod secret;
pub mod tokens;

pub use envelope::{Binding, KeyBytes, Keyring, OpenError};
pub use secret::Secret;
