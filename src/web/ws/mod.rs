//! `/graphql/ws`: GraphQL over WebSocket, the graphql-transport-ws protocol
//! (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md), so the `graphql-ws`
//! client works unmodified.
//!
//! Authentication is in `connection_init`: `{"authorization": "Bearer kw_sk_…"}` (also
//! `Authorization` or `token`), or the upgrade request's own `Authorization` header. A rejected
//! init closes with 4403 Forbidden; `subscribe` before the acknowledgement with 4401
//! Unauthorized; no init within 10 s with 4408; a second init with 4429; a reused operation id
//! with 4409; anything unparsable with 4400. (Hosted-vault session tokens will join here.)

mod shared;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header::{AUTHORIZATION, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use futures_util::StreamExt;
use futures_util::future::AbortHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

pub use shared::SharedSubscriptions;
use shared::{Frame, Subscription};

use crate::auth::Principal;
use crate::auth::bearer::{authenticate, bearer_token};
use crate::error::Error;
use crate::graphql::context::RequestInfo;
use crate::graphql::{KeywaySchema, admission};
use crate::state::AppState;

pub const PROTOCOL: &str = "graphql-transport-ws";
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_MESSAGE: usize = 256 * 1024;

pub async fn upgrade(
    state: web::Data<AppState>,
    schema: web::Data<KeywaySchema>,
    shared: web::Data<SharedSubscriptions>,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let offered = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return Error::bad_input(format!("the WebSocket subprotocol must be {PROTOCOL}")).to_http();
    }
    let (mut response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(_) => return Error::bad_input("not a WebSocket upgrade").to_http(),
    };
    response
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOL));
    let header_token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| bearer_token(Some(h)))
        .map(str::to_owned);
    let info = RequestInfo {
        request_id: crate::web::request_id::of(&req),
        source_ip: state.client_ip.of(&req),
    };
    let stream = stream
        .max_frame_size(MAX_MESSAGE)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE);
    let connection = Connection {
        _open: state.metrics.websocket_opened(),
        state: state.into_inner(),
        schema: schema.into_inner(),
        shared: shared.into_inner(),
        session,
        header_token,
        info,
        principal: None,
        init_received: false,
        operations: HashMap::new(),
    };
    actix_web::rt::spawn(Box::pin(connection.run(stream)));
    response
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<Value>,
}

struct Connection {
    state: std::sync::Arc<AppState>,
    schema: std::sync::Arc<KeywaySchema>,
    shared: std::sync::Arc<SharedSubscriptions>,
    session: Session,
    header_token: Option<String>,
    info: RequestInfo,
    principal: Option<Principal>,
    init_received: bool,
    operations: HashMap<String, AbortHandle>,
    /// Counted in `/metrics` while the socket's task lives.
    _open: crate::metrics::OpenSocket,
}

/// Why the server closes: a graphql-transport-ws code and its reason.
struct Close(u16, &'static str);

impl Connection {
    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<String>();
        let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(init_deadline);
        let close = loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        // Boxed: handling (authentication, parsing) is rare and its future
                        // large; an idle connection should hold only what it waits on.
                        if let Err(close) = Box::pin(self.handle(&text, &finished_tx)).await {
                            break Some(close);
                        }
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if self.session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Binary(_))) => break Some(Close(4400, "Binary messages are not supported")),
                    Some(Ok(AggregatedMessage::Close(_))) | Some(Err(_)) | None => break None,
                },
                Some(id) = finished_rx.recv() => {
                    self.operations.remove(&id);
                }
                _ = &mut init_deadline, if self.principal.is_none() => {
                    break Some(Close(4408, "Connection initialisation timeout"));
                }
            }
        };
        for (_, handle) in self.operations.drain() {
            handle.abort();
        }
        let reason = close.map(|Close(code, text)| CloseReason {
            code: CloseCode::Other(code),
            description: Some(text.to_owned()),
        });
        let _ = self.session.close(reason).await;
    }

    async fn handle(
        &mut self,
        text: &str,
        finished: &mpsc::UnboundedSender<String>,
    ) -> Result<(), Close> {
        let invalid = || Close(4400, "Invalid message");
        let message: ClientMessage = serde_json::from_str(text).map_err(|_| invalid())?;
        match message.kind.as_str() {
            "connection_init" => {
                if self.init_received {
                    return Err(Close(4429, "Too many initialisation requests"));
                }
                self.init_received = true;
                let token =
                    token_of(message.payload.as_ref()).or_else(|| self.header_token.clone());
                let Some(token) = token else {
                    return Err(Close(4403, "Forbidden"));
                };
                let proven = authenticate(
                    &self.state.db,
                    &self.state.last_used,
                    &self.state.principals,
                    &token,
                )
                .await;
                match proven {
                    Ok(principal) => {
                        self.principal = Some(principal);
                        self.send(json!({ "type": "connection_ack" })).await;
                        Ok(())
                    }
                    Err(_) => Err(Close(4403, "Forbidden")),
                }
            }
            "ping" => {
                self.send(json!({ "type": "pong" })).await;
                Ok(())
            }
            "pong" => Ok(()),
            "subscribe" => {
                let Some(principal) = self.principal.clone() else {
                    return Err(Close(4401, "Unauthorized"));
                };
                let id = message.id.filter(|i| !i.is_empty()).ok_or_else(invalid)?;
                if self.operations.contains_key(&id) {
                    return Err(Close(4409, "Subscriber for this id already exists"));
                }
                let mut request: async_graphql::Request =
                    serde_json::from_value(message.payload.ok_or_else(invalid)?)
                        .map_err(|_| invalid())?;
                let admitted = match self.state.documents.prepare(&mut request) {
                    Ok(()) => admission::admit(&self.state, &principal, &mut request).await,
                    Err(syntax) => Err(syntax),
                };
                if let Err(refused) = admitted {
                    let errors = crate::web::graphql::coded_errors(vec![refused]);
                    self.send(json!({ "id": id, "type": "error", "payload": errors }))
                        .await;
                    return Ok(());
                }
                let subscription =
                    self.shared
                        .subscribe(&self.schema, principal, self.info.clone(), request);
                let (task, handle) = futures_util::future::abortable(forward(
                    id.clone(),
                    subscription,
                    self.session.clone(),
                    finished.clone(),
                ));
                self.operations.insert(id, handle);
                actix_web::rt::spawn(task);
                Ok(())
            }
            "complete" => {
                let id = message.id.ok_or_else(invalid)?;
                if let Some(handle) = self.operations.remove(&id) {
                    handle.abort();
                }
                Ok(())
            }
            _ => Err(invalid()),
        }
    }

    async fn send(&mut self, message: Value) {
        let _ = self.session.text(message.to_string()).await;
    }
}

/// Writes one operation's frames to its socket: `next` per result, then `complete`; or a
/// single `error` when it failed before executing. Straight to the session (no hop through
/// the connection's task). A subscriber too slow to keep up is told so (a `next` with a
/// `CONFLICT` error) and completed; it resubscribes.
async fn forward(
    id: String,
    mut subscription: Subscription,
    mut session: Session,
    finished: mpsc::UnboundedSender<String>,
) {
    let quoted = serde_json::to_string(&id).unwrap_or_default();
    loop {
        let (text, last) = match subscription.frames.recv().await {
            Ok(Frame::Next(payload)) => (
                format!(r#"{{"id":{quoted},"type":"next","payload":{payload}}}"#),
                false,
            ),
            Ok(Frame::Error(errors)) => (
                format!(r#"{{"id":{quoted},"type":"error","payload":{errors}}}"#),
                true,
            ),
            Ok(Frame::Complete) | Err(RecvError::Closed) => {
                (format!(r#"{{"id":{quoted},"type":"complete"}}"#), true)
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "a subscriber fell behind; ending it");
                let error = json!({ "id": id, "type": "next", "payload": {
                    "data": null,
                    "errors": [{
                        "message": "the subscriber fell behind and missed events; subscribe again",
                        "extensions": { "code": "CONFLICT" },
                    }],
                }});
                if session.text(error.to_string()).await.is_err() {
                    return;
                }
                (format!(r#"{{"id":{quoted},"type":"complete"}}"#), true)
            }
        };
        if session.text(text).await.is_err() {
            return;
        }
        if last {
            let _ = finished.send(id);
            return;
        }
    }
}

fn token_of(payload: Option<&Value>) -> Option<String> {
    let payload = payload?.as_object()?;
    let raw = ["authorization", "Authorization", "token"]
        .iter()
        .find_map(|k| payload.get(*k)?.as_str())?;
    Some(bearer_token(Some(raw)).unwrap_or(raw).trim().to_owned())
}
