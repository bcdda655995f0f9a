//! Operator tokens (`kw_admin_…`), minted by the CLI and used as bearer tokens.

use chrono::Utc;
use entity::admin_token::{ActiveModel, Column, Entity, Model};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::validate;
use crate::crypto::Secret;
use crate::crypto::tokens::{ADMIN_TOKEN_PREFIX, hash_secret, hashes_match, issue_secret};
use crate::error::Result;

/// Mints a token. Only the CLI calls this: it runs with the server's own authority.
pub async fn create(db: &DatabaseConnection, label: &str) -> Result<(Model, Secret)> {
    let label = validate::required_text("label", label, 200)?;
    let issued = issue_secret(ADMIN_TOKEN_PREFIX);
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        label: Set(label),
        token_hash: Set(issued.hash),
        prefix: Set(issued.display_prefix),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    };
    Ok((row.insert(db).await?, issued.secret))
}

pub async fn find_active_by_secret(db: &DatabaseConnection, secret: &str) -> Result<Option<Model>> {
    let hash = hash_secret(secret);
    let token = Entity::find()
        .filter(Column::TokenHash.eq(hash.clone()))
        .one(db)
        .await?;
    Ok(token.filter(|t| hashes_match(&t.token_hash, &hash) && t.revoked_at.is_none()))
}
