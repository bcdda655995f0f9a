//! Proofs of permission. A service that changes something asks for one of these, and the only
//! way to get one is through `Principal`, so a resolver cannot forget the check.

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::Principal;
use crate::error::{Error, Result};
use crate::service::applications;

/// Proof that the caller is an operator.
#[derive(Debug)]
pub struct OperatorScope(());

/// Proof that the caller may act inside one application (and, for a restricted key, only for
/// one integration of it).
#[derive(Clone, Debug)]
pub struct AppScope {
    application_id: Uuid,
    integration_id: Option<Uuid>,
}

impl AppScope {
    pub fn application_id(&self) -> Uuid {
        self.application_id
    }

    pub fn integration_id(&self) -> Option<Uuid> {
        self.integration_id
    }

    /// For a key proven by a service (a public key on a connect link).
    pub(crate) fn for_key(application_id: Uuid, integration_id: Option<Uuid>) -> Self {
        Self {
            application_id,
            integration_id,
        }
    }

    /// For the CLI and trusted internals that act as the server itself.
    pub(crate) fn trusted(application_id: Uuid) -> Self {
        Self {
            application_id,
            integration_id: None,
        }
    }
}

impl Principal {
    pub fn require_operator(&self) -> Result<OperatorScope> {
        match self {
            Principal::Operator { .. } => Ok(OperatorScope(())),
            _ => Err(Error::Forbidden("this operation is for operators only")),
        }
    }

    /// The application this call acts in. A secret key acts in its own (naming another gives
    /// `NOT_FOUND`, as if it did not exist); an operator must name one that exists.
    pub async fn require_app(
        &self,
        db: &DatabaseConnection,
        requested: Option<Uuid>,
    ) -> Result<AppScope> {
        match (self, requested) {
            (
                Principal::SecretKey {
                    application_id,
                    integration_id,
                    ..
                },
                requested,
            ) => {
                if requested.is_some_and(|r| r != *application_id) {
                    return Err(Error::NotFound);
                }
                Ok(AppScope {
                    application_id: *application_id,
                    integration_id: *integration_id,
                })
            }
            (Principal::Operator { .. }, None) => Err(Error::bad_input(
                "applicationId is required when calling with an operator token",
            )),
            (Principal::Operator { .. }, Some(id)) => {
                if !applications::exists(db, id).await? {
                    return Err(Error::NotFound);
                }
                Ok(AppScope::trusted(id))
            }
        }
    }

    /// The application of a secret key, for what only a secret key may do (reading or using a
    /// consumer's credentials: operators and sessions never do).
    pub fn require_secret_key(&self, why: &'static str) -> Result<AppScope> {
        match self {
            Principal::SecretKey {
                application_id,
                integration_id,
                ..
            } => Ok(AppScope {
                application_id: *application_id,
                integration_id: *integration_id,
            }),
            _ => Err(Error::Forbidden(why)),
        }
    }

    /// Like `require_app`, but refuses keys restricted to one integration: managing the
    /// application's own keys is for unrestricted principals.
    pub async fn require_app_admin(
        &self,
        db: &DatabaseConnection,
        requested: Option<Uuid>,
    ) -> Result<AppScope> {
        let scope = self.require_app(db, requested).await?;
        if scope.integration_id.is_some() {
            return Err(Error::Forbidden(
                "a key restricted to one integration cannot manage API keys",
            ));
        }
        Ok(scope)
    }
}
