//! The domain error and its one mapping to GraphQL `extensions.code` and HTTP statuses.
//!
//! The caller sees a short, stable message; causes (database errors and the like) go to the
//! log with the request id, never into a response.
//!
//! `Error` deliberately does not implement `Display`: async-graphql converts any `Display`
//! type into its error with the text as message and no code, and that path must not exist.

use actix_web::http::StatusCode;
use async_graphql::ErrorExtensions;

#[derive(Debug)]
pub enum Error {
    /// No credential came with the request.
    Unauthenticated,
    /// A bearer credential came and is not valid (unknown, altered, revoked, too long). Same
    /// code and status as `Unauthenticated`; the challenge says `error="invalid_token"`
    /// (RFC 6750 §3.1), so a client can tell a bad key from a missing one.
    InvalidToken,
    Forbidden(&'static str),
    NotFound,
    BadInput(String),
    /// A body over its limit: `BAD_USER_INPUT`, HTTP 413.
    TooLarge(String),
    /// A method the route never takes: `BAD_USER_INPUT`, HTTP 405 with `Allow`.
    MethodNotAllowed {
        why: &'static str,
        allow: &'static str,
    },
    Conflict(String),
    RateLimited {
        retry_after_secs: u64,
    },
    Upstream(String),
    /// The provider did not answer in time: `UPSTREAM_ERROR`, HTTP 504 (a gateway's timeout,
    /// RFC 9110 §15.6.5), so HTTP clients can tell it from a refused or broken call.
    UpstreamTimeout(String),
    /// The cause is logged, never shown.
    Internal(anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadInput(message.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    /// What the caller is told.
    pub fn message(&self) -> String {
        match self {
            Error::Unauthenticated => "authentication required".into(),
            Error::InvalidToken => "the credential is not valid".into(),
            Error::Forbidden(why) | Error::MethodNotAllowed { why, .. } => (*why).into(),
            Error::NotFound => "not found".into(),
            Error::BadInput(why)
            | Error::TooLarge(why)
            | Error::Conflict(why)
            | Error::Upstream(why)
            | Error::UpstreamTimeout(why) => why.clone(),
            Error::RateLimited { retry_after_secs } => {
                format!("rate limited; retry after {retry_after_secs} s")
            }
            Error::Internal(_) => "internal error".into(),
        }
    }

    /// For the CLI, where the operator may see causes.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Error::Internal(cause) => cause,
            other => anyhow::anyhow!(other.message()),
        }
    }

    /// The stable code of SPEC §3.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated | Error::InvalidToken => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::NotFound => "NOT_FOUND",
            Error::BadInput(_) | Error::TooLarge(_) | Error::MethodNotAllowed { .. } => {
                "BAD_USER_INPUT"
            }
            Error::Conflict(_) => "CONFLICT",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::Upstream(_) | Error::UpstreamTimeout(_) => "UPSTREAM_ERROR",
            Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated | Error::InvalidToken => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::BadInput(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `WWW-Authenticate` challenge a 401 carries (RFC 9110 §11.6.1, RFC 6750 §3): no
    /// error code when no credential came, `invalid_token` when a wrong one did.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Error::Unauthenticated => Some("Bearer"),
            Error::InvalidToken => Some("Bearer error=\"invalid_token\""),
            _ => None,
        }
    }

    /// Logs what the caller will not see. Called wherever an error leaves a transport.
    pub fn log(&self) {
        if let Error::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        Error::Internal(err.into())
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

impl From<Error> for async_graphql::Error {
    fn from(err: Error) -> Self {
        err.log();
        let code = err.code();
        let retry_after = match &err {
            Error::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
        })
    }
}

impl Error {
    /// The JSON answer of a plain HTTP route.
    pub fn to_http(&self) -> actix_web::HttpResponse {
        self.log();
        let mut response = actix_web::HttpResponse::build(self.status());
        if let Error::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        if let Some(challenge) = self.challenge() {
            response.insert_header(("WWW-Authenticate", challenge));
        }
        if let Error::MethodNotAllowed { allow, .. } = self {
            response.insert_header(("Allow", *allow));
        }
        response.json(serde_json::json!({
            "error": { "code": self.code(), "message": self.message() }
        }))
    }
}
