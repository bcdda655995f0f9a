//! Request logs and usage: `logs`, `consumerStats`, and `Consumer.requestCounts`.

use async_graphql::connection::{Connection as RelayConnection, EmptyFields};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::request_log::Model;

use super::context::ContextExt;
use super::integrations::app_scope;
use super::relay;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::pagination::PageRequest;
use crate::service::usage::logs;
use crate::service::usage::request_counts::{self, RequestCounts};
use crate::service::usage::{ApiStyle, LogFilter};

/// One call through Keyway, in Apideck's log model. Never holds a credential, a query string
/// or a body.
pub struct RequestLog(Model);

#[Object]
impl RequestLog {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// `UNIFY` (the GraphQL API), `PROXY` or `VAULT`.
    async fn api_style(&self) -> ApiStyle {
        match self.0.api_style.as_str() {
            "proxy" => ApiStyle::Proxy,
            "vault" => ApiStyle::Vault,
            _ => ApiStyle::Unify,
        }
    }

    async fn operation(&self) -> &str {
        &self.0.operation
    }

    async fn http_method(&self) -> &str {
        &self.0.http_method
    }

    /// The path called (relative to the provider for proxy calls), without query string.
    async fn path(&self) -> &str {
        &self.0.path
    }

    /// The provider's base URL, for proxy calls.
    async fn base_url(&self) -> Option<&str> {
        self.0.base_url.as_deref()
    }

    async fn status_code(&self) -> i32 {
        self.0.status_code
    }

    async fn success(&self) -> bool {
        self.0.success
    }

    /// Total time in Keyway, in milliseconds.
    async fn duration_ms(&self) -> f64 {
        self.0.duration_ms
    }

    /// Time waiting for the provider, in milliseconds.
    async fn latency_ms(&self) -> Option<f64> {
        self.0.latency_ms
    }

    /// Keyway's own share: duration minus latency, in milliseconds.
    async fn execution_ms(&self) -> f64 {
        (self.0.duration_ms - self.0.latency_ms.unwrap_or(0.0)).max(0.0)
    }

    async fn service_id(&self) -> Option<&str> {
        self.0.service_id.as_deref()
    }

    async fn unified_api(&self) -> Option<&str> {
        self.0.unified_api.as_deref()
    }

    async fn consumer_id(&self) -> Option<&str> {
        self.0.consumer_id.as_deref()
    }

    async fn connection_id(&self) -> Option<ID> {
        self.0
            .connection_id
            .map(|id| ids::encode(NodeType::Connection, id))
    }

    async fn source_ip(&self) -> Option<&str> {
        self.0.source_ip.as_deref()
    }

    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }

    async fn sandbox(&self) -> bool {
        self.0.sandbox
    }

    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum LogStatus {
    /// 2xx and 3xx answers.
    Success,
    Failure,
}

#[derive(InputObject, Default)]
#[graphql(name = "LogFilter")]
pub struct LogFilterInput {
    pub consumer_id: Option<String>,
    pub service_id: Option<String>,
    pub connection_id: Option<ID>,
    pub api_style: Option<ApiStyle>,
    pub status: Option<LogStatus>,
    /// An exact HTTP status code.
    pub status_code: Option<i32>,
    /// From this instant (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
#[graphql(name = "RequestCounts")]
pub struct RequestCountsOutput {
    pub unify: u64,
    pub proxy: u64,
    pub vault: u64,
    pub total: u64,
}

impl From<RequestCounts> for RequestCountsOutput {
    fn from(counts: RequestCounts) -> Self {
        Self {
            unify: counts.unify,
            proxy: counts.proxy,
            vault: counts.vault,
            total: counts.total(),
        }
    }
}

#[derive(SimpleObject)]
pub struct ConsumerStats {
    pub consumer_id: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub request_counts: RequestCountsOutput,
}

#[derive(Default)]
pub struct LogQuery;

#[Object]
impl LogQuery {
    /// Newest first. Permissions: secret key (its application; a key restricted to one
    /// integration sees that service's calls), operator (naming `applicationId`).
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<LogFilterInput>,
    ) -> async_graphql::Result<RelayConnection<String, RequestLog, EmptyFields>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let f = filter.unwrap_or_default();
        let status_code = f
            .status_code
            .map(|c| {
                u16::try_from(c)
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| Error::bad_input("statusCode must be between 100 and 599"))
            })
            .transpose()?;
        let filter = LogFilter {
            consumer_id: f.consumer_id,
            service_id: f.service_id,
            connection_id: ids::decode_optional(NodeType::Connection, f.connection_id.as_ref())?,
            api_style: f.api_style,
            status_code,
            success: f.status.map(|s| s == LogStatus::Success),
            from: f.from,
            to: f.to,
        };
        let rows = logs::list(&ctx.state()?.db, &scope, &filter, &page).await?;
        Ok(relay::connection(
            rows,
            |m| m.id.to_string(),
            RequestLog,
            EmptyFields,
        ))
    }

    /// A consumer's calls by API style in `[start, end)`, counted from the request logs (so
    /// within their retention); all time without bounds, as `Consumer.requestCounts`.
    /// Permissions: as `logs`.
    async fn consumer_stats(
        &self,
        ctx: &Context<'_>,
        consumer_id: String,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        application_id: Option<ID>,
    ) -> async_graphql::Result<ConsumerStats> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Err(Error::bad_input("start is after end").into());
        }
        let state = ctx.state()?;
        // An unknown consumer is NOT_FOUND, like everywhere else.
        crate::service::consumers::get(&state.db, &scope, &consumer_id).await?;
        let counts =
            request_counts::consumer_counts(&state.db, &scope, &consumer_id, start, end).await?;
        Ok(ConsumerStats {
            consumer_id,
            start,
            end,
            request_counts: counts.into(),
        })
    }
}
