//! SeaORM entities: the shape of stored rows and nothing else. No business rules live here,
//! and no entity is ever exposed directly through GraphQL (see `src/graphql`).

pub mod admin;
pub mod admin_token;
pub mod api_key;
pub mod application;
pub mod connection;
pub mod consumer;
pub mod data_key;
pub mod event;
pub mod integration;
pub mod oauth_flow;
pub mod refresh_lease;
pub mod request_count;
pub mod request_log;
pub mod usage_counter;
pub mod webhook_delivery;
pub mod webhook_endpoint;
