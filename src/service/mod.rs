//! The rules, one module per noun. Services own validation and transactions; they are the only
//! code (besides migrations) that talks to SeaORM. Transports call them with a scope from
//! `auth` that proves the caller may do what it asks.

pub mod admin_tokens;
pub mod admins;
pub mod api_keys;
pub mod applications;
pub mod connections;
pub mod consumers;
pub mod events;
pub mod housekeeping;
pub mod integrations;
pub mod keys;
pub mod last_used;
pub mod oauth;
pub mod pagination;
pub mod proxy;
pub mod redirect_uri;
pub mod refresh;
pub mod usage;
pub(crate) mod validate;
pub mod webhooks;
