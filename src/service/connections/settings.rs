//! Per-connection settings: the provider's form fields, checked and completed with defaults.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::catalog::{FieldType, FormField, Provider};
use crate::error::{Error, Result};

const VALUE_MAX: usize = 2048;

/// Merges `changes` into `current`: unknown keys are refused, values checked against their
/// field, `null` removes a key; defaults fill what is unset.
pub fn merge(provider: &Provider, current: &Value, changes: Option<&Value>) -> Result<Value> {
    let mut merged: Map<String, Value> = current.as_object().cloned().unwrap_or_default();
    if let Some(changes) = changes {
        let changes = changes
            .as_object()
            .ok_or_else(|| Error::bad_input("settings must be a JSON object"))?;
        for (key, value) in changes {
            let field = provider
                .settings
                .iter()
                .find(|f| &f.id == key)
                .ok_or_else(|| {
                    Error::bad_input(format!("{key} is not a setting of {}", provider.service_id))
                })?;
            match value {
                Value::Null => {
                    merged.remove(key);
                }
                Value::String(text) => {
                    check_value(field, text)?;
                    merged.insert(key.clone(), Value::String(text.trim().to_owned()));
                }
                _ => return Err(Error::bad_input(format!("setting {key} must be a string"))),
            }
        }
    }
    for field in &provider.settings {
        if let Some(default) = &field.default {
            merged
                .entry(field.id.clone())
                .or_insert_with(|| Value::String(default.clone()));
        }
    }
    Ok(Value::Object(merged))
}

/// Every required setting has a value.
pub fn configured(provider: &Provider, settings: &Value) -> bool {
    provider.settings.iter().filter(|f| f.required).all(|f| {
        settings
            .get(&f.id)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    })
}

/// The settings as text values, for URL templates.
pub fn as_map(settings: &Value) -> BTreeMap<String, String> {
    settings
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A credential or setting value against its field: length, options, pattern.
pub fn check_value(field: &FormField, value: &str) -> Result<()> {
    let value = value.trim();
    if value.len() > VALUE_MAX || value.chars().any(char::is_control) {
        return Err(Error::bad_input(format!(
            "{} is too long or has control characters",
            field.id
        )));
    }
    if field.kind == FieldType::Select
        && !field.options.is_empty()
        && !field.options.iter().any(|o| o == value)
    {
        return Err(Error::bad_input(format!(
            "{} must be one of {}",
            field.id,
            field.options.join(", ")
        )));
    }
    if let Some(pattern) = &field.pattern
        && !value.is_empty()
    {
        let anchored = regex_lite::Regex::new(pattern)
            .map_err(|_| Error::internal(anyhow::anyhow!("bad pattern for {}", field.id)))?;
        if !anchored.is_match(value) {
            // Never echo the value: it may be a secret.
            return Err(Error::bad_input(format!(
                "{} does not have the expected format",
                field.id
            )));
        }
    }
    Ok(())
}
