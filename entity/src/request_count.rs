//! Calls of one consumer through one service in one API style, all time: the running total
//! behind `Consumer.requestCounts`, added to by each request-log flush in the same transaction
//! as its rows, and kept when those rows pass retention.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub application_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub consumer_id: String,
    /// Empty for calls of no service (most GraphQL calls): a key column cannot be null.
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_id: String,
    /// `unify`, `proxy` or `vault`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub api_style: String,
    pub calls: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
