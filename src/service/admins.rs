//! Console operators: an email and an argon2id password hash.

use chrono::Utc;
use entity::admin::{ActiveModel, Column, Entity, Model};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::crypto::{Secret, password};
use crate::error::{Error, Result};

const MIN_PASSWORD_CHARS: usize = 12;

pub async fn create(db: &DatabaseConnection, email: &str, pass: Secret) -> Result<Model> {
    let email = email.trim().to_ascii_lowercase();
    if email.len() > 320 || !is_plausible_email(&email) {
        return Err(Error::bad_input("that is not an email address"));
    }
    if pass.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::bad_input(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if Entity::find()
        .filter(Column::Email.eq(email.as_str()))
        .one(db)
        .await?
        .is_some()
    {
        return Err(Error::Conflict("an operator with that email exists".into()));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&pass))
        .await
        .map_err(Error::internal)?
        .map_err(Error::Internal)?;
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email),
        password_hash: Set(hash),
        created_at: Set(Utc::now()),
        last_login_at: Set(None),
    };
    Ok(row.insert(db).await?)
}

fn is_plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}
