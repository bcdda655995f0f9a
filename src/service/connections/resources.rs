//! Per-resource settings of a connection (defaults an application keeps per API resource).

use entity::connection::ActiveModel;
use sea_orm::{DatabaseConnection, Set};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{CONFIGURATION_MAX_BYTES, get_live, object, write};
use crate::auth::AppScope;
use crate::error::{Error, Result};
use crate::service::events::{self, EventType};

pub async fn resource_settings(
    db: &DatabaseConnection,
    scope: &AppScope,
    id: Uuid,
    resource: &str,
) -> Result<Value> {
    let conn = get_live(db, scope, id).await?;
    let resource = resource_name(resource)?;
    Ok(conn
        .configuration
        .get(&resource)
        .cloned()
        .unwrap_or_else(|| json!({})))
}

pub async fn update_resource_settings(
    deps: &super::Deps<'_>,
    scope: &AppScope,
    id: Uuid,
    resource: &str,
    configuration: Value,
) -> Result<Value> {
    let resource = resource_name(resource)?;
    let configuration = object(
        "configuration",
        Some(configuration),
        CONFIGURATION_MAX_BYTES,
    )?;
    let current = get_live(deps.db, scope, id).await?;
    let mut all: Map<String, Value> = current
        .configuration
        .as_object()
        .cloned()
        .unwrap_or_default();
    all.insert(resource, configuration.clone());
    let mut row: ActiveModel = current.clone().into();
    row.configuration = Set(Value::Object(all));
    write(deps, current, row, |txn, model| async move {
        events::record(&txn, EventType::Updated, &model).await?;
        Ok((txn, model))
    })
    .await?;
    Ok(configuration)
}

fn resource_name(resource: &str) -> Result<String> {
    let ok = (1..=64).contains(&resource.len())
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(Error::bad_input(
            "resource must be 1-64 letters, digits, - _ or .",
        ));
    }
    Ok(resource.to_owned())
}
