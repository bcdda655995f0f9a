//! Principals and how each is proven. Resolvers and handlers start with one of the
//! `require_*` calls; the scope they get back is what services accept.

pub mod bearer;
pub mod cache;
mod principal;
mod scope;

pub use principal::{Principal, PrincipalKind, Tenancy};
pub use scope::{AppScope, OperatorScope};
