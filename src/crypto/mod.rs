//! Everything that touches secret material: bearer-secret generation and hashing, password
//! hashing, and the `Secret` string type. Nothing outside this module handles raw key bytes.

pub mod password;
mod secret;
pub mod tokens;

pub use secret::Secret;
