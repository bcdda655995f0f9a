//! Opaque global ids (the GraphQL `Node` ids, also used in event payloads): base64url of `Type:uuid`. Clients must treat
//! them as opaque; the server decodes them and checks the type.

use async_graphql::ID;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Application,
    ApiKey,
    Consumer,
    Integration,
    Connection,
    Webhook,
    WebhookDelivery,
}

impl NodeType {
    const ALL: [NodeType; 7] = [
        NodeType::Webhook,
        NodeType::WebhookDelivery,
        NodeType::Application,
        NodeType::ApiKey,
        NodeType::Consumer,
        NodeType::Integration,
        NodeType::Connection,
    ];

    fn name(self) -> &'static str {
        match self {
            NodeType::Application => "Application",
            NodeType::ApiKey => "ApiKey",
            NodeType::Consumer => "Consumer",
            NodeType::Integration => "Integration",
            NodeType::Connection => "Connection",
            NodeType::Webhook => "Webhook",
            NodeType::WebhookDelivery => "WebhookDelivery",
        }
    }
}

pub fn encode(kind: NodeType, id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.name())))
}

/// Any global id: its type and row id.
pub fn decode(id: &str) -> Result<(NodeType, Uuid)> {
    let invalid = || Error::bad_input("malformed id");
    if id.len() > 128 {
        return Err(invalid());
    }
    let text = URL_SAFE_NO_PAD
        .decode(id)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (name, uuid) = text.split_once(':').ok_or_else(invalid)?;
    let kind = NodeType::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(invalid)?;
    let uuid = Uuid::parse_str(uuid).map_err(|_| invalid())?;
    Ok((kind, uuid))
}

/// A global id that must be of one type.
pub fn decode_as(expected: NodeType, id: &str) -> Result<Uuid> {
    match decode(id)? {
        (kind, uuid) if kind == expected => Ok(uuid),
        _ => Err(Error::bad_input(format!(
            "id is not an id of a {}",
            expected.name()
        ))),
    }
}

/// The smallest UUIDv7 of `at`'s millisecond (its random bits zero). Rows keyed by UUIDv7s
/// made when they were written are found by time through their key: every id made at `at` or
/// later sorts at or above it, every one made earlier below.
pub fn first_v7_at(at: chrono::DateTime<chrono::Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

pub fn decode_optional(expected: NodeType, id: Option<&ID>) -> Result<Option<Uuid>> {
    id.map(|id| decode_as(expected, id)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let uuid = Uuid::now_v7();
        let id = encode(NodeType::Consumer, uuid);
        assert_eq!(decode(&id).unwrap(), (NodeType::Consumer, uuid));
        assert!(decode_as(NodeType::Application, &id).is_err());
        for bad in ["", "x", "QXBwbGljYXRpb246", "Zm9vOmJhcg"] {
            assert!(decode(&ID(bad.into())).is_err(), "{bad}");
        }
    }
}
