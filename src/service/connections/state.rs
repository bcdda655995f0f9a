//! Connection state (Apideck's vocabulary, which frontends build on) and how it follows from
//! what a connection holds.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum ConnectionState {
    /// The integration is enabled and there is no connection yet (never stored).
    Available,
    /// The connection exists but lacks settings or authorization.
    Added,
    /// Credentials are present, required settings are missing.
    Authorized,
    /// Ready to call.
    Callable,
    /// Refresh failed for good or the credentials were rejected: reconnect.
    Invalid,
    /// Access withdrawn; credentials wiped.
    Revoked,
    /// A tombstone; credentials wiped.
    Deleted,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Available => "available",
            ConnectionState::Added => "added",
            ConnectionState::Authorized => "authorized",
            ConnectionState::Callable => "callable",
            ConnectionState::Invalid => "invalid",
            ConnectionState::Revoked => "revoked",
            ConnectionState::Deleted => "deleted",
        }
    }

    pub fn parse_stored(text: &str) -> Self {
        match text {
            "authorized" => ConnectionState::Authorized,
            "callable" => ConnectionState::Callable,
            "invalid" => ConnectionState::Invalid,
            "revoked" => ConnectionState::Revoked,
            "deleted" => ConnectionState::Deleted,
            _ => ConnectionState::Added,
        }
    }

    /// A status filter word: the state names, plus Appnigma's `connected` (= callable) and
    /// `expired` (= invalid).
    pub fn parse_filter(word: &str) -> Result<Self> {
        Ok(match word.to_ascii_lowercase().as_str() {
            "added" => ConnectionState::Added,
            "authorized" => ConnectionState::Authorized,
            "callable" | "connected" => ConnectionState::Callable,
            "invalid" | "expired" => ConnectionState::Invalid,
            "revoked" => ConnectionState::Revoked,
            "deleted" => ConnectionState::Deleted,
            _ => {
                return Err(Error::bad_input(
                    "status must be one of added, authorized, callable, connected, invalid, \
                     expired, revoked, deleted",
                ));
            }
        })
    }

    /// The state of a live connection from what it holds.
    pub fn derive(has_credentials: bool, configured: bool, invalid: bool) -> Self {
        match (has_credentials, configured) {
            _ if invalid => ConnectionState::Invalid,
            (true, true) => ConnectionState::Callable,
            (true, false) => ConnectionState::Authorized,
            (false, _) => ConnectionState::Added,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionState::*;
    use super::*;

    #[test]
    fn state_follows_credentials_and_settings() {
        assert_eq!(ConnectionState::derive(false, false, false), Added);
        assert_eq!(ConnectionState::derive(false, true, false), Added);
        assert_eq!(ConnectionState::derive(true, false, false), Authorized);
        assert_eq!(ConnectionState::derive(true, true, false), Callable);
        assert_eq!(ConnectionState::derive(true, true, true), Invalid);
        assert_eq!(
            ConnectionState::parse_filter("connected").unwrap(),
            Callable
        );
        assert_eq!(ConnectionState::parse_filter("EXPIRED").unwrap(), Invalid);
        assert!(ConnectionState::parse_filter("available").is_err());
    }
}
