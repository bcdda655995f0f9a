//! Applications (tenants): operator-only management; a secret key sees its own.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::application::Model;

use super::context::ContextExt;
use super::relay;
use crate::ids::{self, NodeType};
use crate::service::applications::{self, ApplicationChanges, NewApplication};
use crate::service::pagination::PageRequest;

pub struct Application(pub Model);

#[Object]
impl Application {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::Application, self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Redirect URIs a connect flow may return to; matched exactly.
    async fn redirect_uris(&self) -> Vec<String> {
        applications::redirect_uris(&self.0)
    }

    async fn default_redirect_uri(&self) -> Option<&str> {
        self.0.default_redirect_uri.as_deref()
    }

    async fn requests_per_month(&self) -> Option<i64> {
        self.0.requests_per_month
    }

    async fn requests_per_minute(&self) -> Option<i64> {
        self.0.requests_per_minute
    }

    /// Requests counted against each limit of the plan in its current window (none for a
    /// window without a limit): every GraphQL POST and proxied call of the application's keys,
    /// this one included. Other replicas' counts are in it within about a second.
    async fn plan_usage(&self, ctx: &Context<'_>) -> async_graphql::Result<PlanUsage> {
        let state = ctx.state()?;
        let usage = state.limits.plan_usage(&state.db, &self.0).await?;
        Ok(PlanUsage {
            minute: usage.minute.map(WindowUsage::from),
            month: usage.month.map(WindowUsage::from),
        })
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct PlanUsage {
    /// Against `requestsPerMinute`.
    pub minute: Option<WindowUsage>,
    /// Against `requestsPerMonth` (calendar months, UTC).
    pub month: Option<WindowUsage>,
}

#[derive(SimpleObject)]
pub struct WindowUsage {
    pub used: i64,
    pub limit: i64,
    /// What is left before calls are refused with `RATE_LIMITED` (never below 0).
    pub remaining: i64,
    /// When the window ends and its count starts again from 0.
    pub resets_at: DateTime<Utc>,
}

impl From<crate::service::usage::WindowUsage> for WindowUsage {
    fn from(usage: crate::service::usage::WindowUsage) -> Self {
        Self {
            used: usage.used,
            limit: usage.limit,
            remaining: (usage.limit - usage.used).max(0),
            resets_at: usage.resets_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateApplicationInput {
    pub name: String,
    #[graphql(default)]
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub requests_per_month: Option<i64>,
    pub requests_per_minute: Option<i64>,
}

/// Fields left out are unchanged; an explicit `null` clears a nullable one.
#[derive(InputObject)]
pub struct UpdateApplicationInput {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub default_redirect_uri: MaybeUndefined<String>,
    pub requests_per_month: MaybeUndefined<i64>,
    pub requests_per_minute: MaybeUndefined<i64>,
}

pub struct ApplicationTotals;

#[Object]
impl ApplicationTotals {
    /// How many applications exist.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let operator = ctx.principal()?.require_operator()?;
        Ok(applications::count(&ctx.state()?.db, &operator).await?)
    }
}

#[derive(Default)]
pub struct ApplicationQuery;

#[Object]
impl ApplicationQuery {
    /// Permissions: operator.
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
    async fn applications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Application, ApplicationTotals>> {
        let operator = ctx.principal()?.require_operator()?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let rows = applications::list(&ctx.state()?.db, &operator, &page).await?;
        Ok(relay::connection(
            rows,
            |m| m.id.to_string(),
            Application,
            ApplicationTotals,
        ))
    }

    /// Permissions: operator (any application), secret key (its own).
    async fn application(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Application> {
        let tenancy = ctx.principal()?.tenancy();
        let id = ids::decode_as(NodeType::Application, &id)?;
        Ok(Application(
            applications::get(&ctx.state()?.db, tenancy, id).await?,
        ))
    }
}

#[derive(Default)]
pub struct ApplicationMutation;

#[Object]
impl ApplicationMutation {
    /// Permissions: operator.
    async fn create_application(
        &self,
        ctx: &Context<'_>,
        input: CreateApplicationInput,
    ) -> async_graphql::Result<Application> {
        let operator = ctx.principal()?.require_operator()?;
        let input = NewApplication {
            name: input.name,
            redirect_uris: input.redirect_uris,
            default_redirect_uri: input.default_redirect_uri,
            requests_per_month: input.requests_per_month,
            requests_per_minute: input.requests_per_minute,
        };
        Ok(Application(
            applications::create(&ctx.state()?.db, &operator, input).await?,
        ))
    }

    /// Permissions: operator.
    async fn update_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateApplicationInput,
    ) -> async_graphql::Result<Application> {
        let operator = ctx.principal()?.require_operator()?;
        let id = ids::decode_as(NodeType::Application, &id)?;
        let changes = ApplicationChanges {
            name: input.name,
            redirect_uris: input.redirect_uris,
            default_redirect_uri: input.default_redirect_uri.as_opt_ref().map(|v| v.cloned()),
            requests_per_month: input.requests_per_month.as_opt_ref().map(|v| v.copied()),
            requests_per_minute: input.requests_per_minute.as_opt_ref().map(|v| v.copied()),
        };
        let state = ctx.state()?;
        let updated = applications::update(&state.db, &operator, id, changes).await?;
        // A new plan applies from the next request on this replica (others within seconds).
        state.limits.forget_plan(updated.id);
        Ok(Application(updated))
    }
}
