//! One integration-test binary (faster to link than one per file).

mod support;

mod api_keys;
mod applications;
mod auth;
mod bad_input;
mod cli;
mod connections;
mod consumers;
mod demo;
mod encryption;
mod events;
mod fake_provider;
mod graphql_http;
mod integrations;
mod isolation;
mod metrics;
mod oauth;
mod proxy;
mod receiver;
mod refresh;
mod server;
mod tls;
