//! Who is calling, once proven. Later principals (public key, hosted session) join this enum.

use uuid::Uuid;

/// `Eq + Hash`: identical principals running the same subscription share one execution.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An operator token (`kw_admin_…`): everything, across applications.
    Operator { token_id: Uuid },
    /// A secret key (`kw_sk_…`): everything inside its application, or its one integration.
    SecretKey {
        key_id: Uuid,
        application_id: Uuid,
        integration_id: Option<Uuid>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum PrincipalKind {
    Operator,
    SecretKey,
}

impl Principal {
    pub fn kind(&self) -> PrincipalKind {
        match self {
            Principal::Operator { .. } => PrincipalKind::Operator,
            Principal::SecretKey { .. } => PrincipalKind::SecretKey,
        }
    }

    /// Which applications' rows this principal may see.
    pub fn tenancy(&self) -> Tenancy {
        match self {
            Principal::Operator { .. } => Tenancy::All,
            Principal::SecretKey { application_id, .. } => Tenancy::Application(*application_id),
        }
    }
}

/// The rows a caller may see. Every read by id goes through this, so that another tenant's
/// object answers exactly like a missing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tenancy {
    All,
    Application(Uuid),
}

impl Tenancy {
    pub fn allows(&self, application_id: Uuid) -> bool {
        match self {
            Tenancy::All => true,
            Tenancy::Application(own) => *own == application_id,
        }
    }
}
