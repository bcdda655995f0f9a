//! `viewer`: who is calling.

use async_graphql::{Context, Object};

use super::applications::Application;
use super::context::ContextExt;
use crate::auth::{Principal, PrincipalKind};
use crate::service::applications;

pub struct Viewer(Principal);

#[Object]
impl Viewer {
    async fn kind(&self) -> PrincipalKind {
        self.0.kind()
    }

    /// The application a secret key belongs to; none for operators.
    async fn application(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Application>> {
        match &self.0 {
            Principal::SecretKey { application_id, .. } => {
                let app =
                    applications::get(&ctx.state()?.db, self.0.tenancy(), *application_id).await?;
                Ok(Some(Application(app)))
            }
            Principal::Operator { .. } => Ok(None),
        }
    }
}

#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// Permissions: any authenticated caller.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        Ok(Viewer(ctx.principal()?.clone()))
    }
}
