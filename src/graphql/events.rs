//! `connectionEvents`: the events of §6 for the caller's application, as they commit.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Json, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::context::ContextExt;
use super::integrations::app_scope;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::events::EventType;
use crate::service::events::relay::Published;

pub struct ConnectionEvent(Arc<Published>);

#[Object]
impl ConnectionEvent {
    async fn event_id(&self) -> String {
        self.0.id.to_string()
    }

    /// `connection.created`, `connection.updated`, …
    async fn r#type(&self) -> &str {
        &self.0.event_type
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    async fn application_id(&self) -> ID {
        ids::encode(NodeType::Application, self.0.application_id)
    }

    async fn connection_id(&self) -> Option<ID> {
        self.0
            .connection_id
            .map(|id| ids::encode(NodeType::Connection, id))
    }

    async fn consumer_id(&self) -> Option<&str> {
        self.0.consumer_id.as_deref()
    }

    async fn service_id(&self) -> Option<&str> {
        self.0.service_id.as_deref()
    }

    /// The connection as it was after the change (never its credentials).
    async fn connection(&self) -> Json<serde_json::Value> {
        Json(
            self.0
                .payload
                .get("connection")
                .cloned()
                .unwrap_or_default(),
        )
    }
}

#[derive(InputObject, Default)]
pub struct EventFilterInput {
    pub consumer_id: Option<String>,
    pub service_id: Option<String>,
    /// Event types (`connection.created`, …); absent or empty: all.
    pub types: Option<Vec<String>>,
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Permissions: secret key (its application; a key restricted to one integration, that
    /// integration's events), operator (naming `applicationId`). Delivered after commit, in
    /// order per connection; a subscriber too far behind gets an error and the stream ends.
    async fn connection_events(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ConnectionEvent>> + use<>>
    {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let state = ctx.state()?;
        let filter = filter.unwrap_or_default();
        let mut types = Vec::new();
        for t in filter.types.unwrap_or_default() {
            if EventType::parse(&t).is_none() {
                return Err(Error::bad_input(format!("{t} is not an event type")).into());
            }
            types.push(t);
        }
        let only_service = match scope.integration_id() {
            Some(id) => Some(
                crate::service::integrations::get(&state.db, &scope, id)
                    .await?
                    .service_id,
            ),
            None => None,
        };
        let application = scope.application_id();
        let wanted = move |e: &Published| {
            e.application_id == application
                && only_service
                    .as_deref()
                    .is_none_or(|s| e.service_id.as_deref() == Some(s))
                && filter
                    .consumer_id
                    .as_deref()
                    .is_none_or(|c| e.consumer_id.as_deref() == Some(c))
                && filter
                    .service_id
                    .as_deref()
                    .is_none_or(|s| e.service_id.as_deref() == Some(s))
                && (types.is_empty() || types.contains(&e.event_type))
        };
        let receiver = state.bus.subscribe();
        Ok(futures_util::stream::unfold(
            Some(receiver),
            move |receiver| {
                let wanted = wanted.clone();
                async move {
                    let mut receiver = receiver?;
                    loop {
                        match receiver.recv().await {
                            Ok(event) if wanted(&event) => {
                                return Some((Ok(ConnectionEvent(event)), Some(receiver)));
                            }
                            Ok(_) => {}
                            Err(RecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "a subscriber fell behind; ending it");
                                let err = Error::Conflict(
                                    "the subscriber fell behind and missed events; subscribe again"
                                        .into(),
                                );
                                return Some((Err(err.into()), None));
                            }
                            Err(RecvError::Closed) => return None,
                        }
                    }
                }
            },
        ))
    }
}
