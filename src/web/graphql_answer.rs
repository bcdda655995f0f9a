//! How a `POST /graphql` request and answer are encoded (GraphQL over HTTP): the request's
//! `Content-Type`; the answer's media type, from the caller's `Accept`; its status; and its
//! body, which has no `data` entry when the request was refused before it ran (GraphQL,
//! "Response Format").
//!
//! `application/graphql-response+json` answers a refused request with its error's status
//! (400 for a document that does not parse or validate); the legacy `application/json`
//! answers every well-formed request with 200 (and a 429 when the rate limit refused all of
//! it, as any type does).
//!
//! Ranges are weighed as RFC 9110 §12.5.1 says: the most specific range naming a type gives
//! its quality, `q=0` refuses it. Between equals, a type named outright beats one reached by a
//! wildcard, and then the first named wins. A wildcard alone (`*/*`: curl, `fetch`) gets
//! `application/json`, which every client before the GraphQL-over-HTTP draft reads; no
//! `Accept` at all gets `application/graphql-response+json`, as the draft asks of servers
//! since 2025-01-01.

use std::collections::BTreeMap;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::{Accept, Header, Quality, QualityItem};
use async_graphql::{BatchResponse, Response, ServerError, Value};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`.
    GraphqlResponse,
    /// `application/json`.
    Json,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json",
        }
    }

    /// The status of an answer that went through execution (or was refused on the way):
    /// with `application/graphql-response+json`, a single request refused before it ran
    /// carries `refused_status` of its first error; otherwise 200.
    pub fn status(
        self,
        answer: &BatchResponse,
        refused_status: impl Fn(&ServerError) -> StatusCode,
    ) -> StatusCode {
        match (self, answer) {
            (Media::GraphqlResponse, BatchResponse::Single(response))
                if refused_before_running(response) =>
            {
                response
                    .errors
                    .first()
                    .map_or(StatusCode::BAD_REQUEST, refused_status)
            }
            _ => StatusCode::OK,
        }
    }
}

/// A request refused before it ran (it did not parse, validate or pass admission): it has no
/// data, and none of its errors was raised by a field (those carry a path).
fn refused_before_running(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// A response as it goes on the wire: as async-graphql's, but without `data` when the request
/// was refused before it ran (async-graphql writes `"data": null` there).
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
}

impl<'a> From<&'a Response> for Wire<'a> {
    fn from(response: &'a Response) -> Self {
        Wire {
            data: (!refused_before_running(response)).then_some(&response.data),
            extensions: &response.extensions,
            errors: &response.errors,
        }
    }
}

/// The body of an answer: one response, or a batch's array of them.
pub fn body(answer: &BatchResponse) -> serde_json::Result<Vec<u8>> {
    match answer {
        BatchResponse::Single(response) => serde_json::to_vec(&Wire::from(response)),
        BatchResponse::Batch(responses) => {
            serde_json::to_vec(&responses.iter().map(Wire::from).collect::<Vec<_>>())
        }
    }
}

/// A POST's body must say it is JSON in UTF-8 (`application/json`, with no charset or
/// `charset=utf-8`): GraphQL over HTTP asks servers to refuse a POST without a `Content-Type`,
/// and refusing the types an HTML form or a "simple" cross-site `fetch` can send keeps such a
/// request from ever running.
pub fn check_request_type(req: &HttpRequest) -> crate::error::Result<()> {
    use actix_web::HttpMessage;
    let refused = || {
        crate::error::Error::bad_input("the body must be application/json (Content-Type header)")
    };
    let Ok(Some(mime)) = req.mime_type() else {
        return Err(refused());
    };
    let utf8 = mime
        .get_param(actix_web::mime::CHARSET)
        .is_none_or(|charset| charset.as_str().eq_ignore_ascii_case("utf-8"));
    if mime.essence_str().eq_ignore_ascii_case("application/json") && utf8 {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The media type to answer in; `None` when the caller accepts neither (406).
pub fn negotiate(req: &HttpRequest) -> Option<Media> {
    if !req.headers().contains_key(actix_web::http::header::ACCEPT) {
        return Some(Media::GraphqlResponse);
    }
    match Accept::parse(req) {
        Ok(accept) => choose(&accept.0),
        // A header that does not parse says nothing usable: answer as before the draft.
        Err(_) => Some(Media::Json),
    }
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// How specifically a range names a type: by `*/*`, by `application/*`, or outright.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Any,
    Subtype,
    Exact,
}

fn choose(ranges: &[QualityItem<actix_web::mime::Mime>]) -> Option<Media> {
    let weigh = |essence: &str| -> Option<(Quality, Specificity, std::cmp::Reverse<usize>)> {
        let mut best: Option<(Specificity, Quality, usize)> = None;
        for (position, range) in ranges.iter().enumerate() {
            let item = &range.item;
            // (`subtype()` leaves out a `+json` suffix: compare the whole `type/subtype+suffix`.)
            let specificity = match (item.type_().as_str(), item.subtype().as_str()) {
                ("*", "*") => Specificity::Any,
                ("application", "*") => Specificity::Subtype,
                _ if item.essence_str().eq_ignore_ascii_case(essence) => Specificity::Exact,
                _ => continue,
            };
            let quality = range.quality;
            if best.is_none_or(|(s, _, _)| specificity > s) {
                best = Some((specificity, quality, position));
            }
        }
        let (specificity, quality, position) = best?;
        (quality > Quality::ZERO).then_some((quality, specificity, std::cmp::Reverse(position)))
    };
    let graphql_response = weigh(GRAPHQL_RESPONSE);
    let json = weigh("application/json");
    match (graphql_response, json) {
        (None, None) => None,
        (Some(_), None) => Some(Media::GraphqlResponse),
        (None, Some(_)) => Some(Media::Json),
        // Equal in every way only when one wildcard reaches both: the legacy type then.
        (Some(g), Some(j)) if g > j => Some(Media::GraphqlResponse),
        (Some(_), Some(_)) => Some(Media::Json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<Media> {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("accept", accept))
            .to_http_request();
        negotiate(&req)
    }

    #[test]
    fn the_callers_preference_decides() {
        use Media::*;
        for (accept, expected) in [
            // Apollo Client 4, urql, GraphiQL, graphql-http's audit.
            (
                "application/graphql-response+json,application/json;q=0.9",
                Some(GraphqlResponse),
            ),
            (
                "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed",
                Some(GraphqlResponse),
            ),
            ("application/json, multipart/mixed", Some(Json)),
            ("application/graphql-response+json", Some(GraphqlResponse)),
            ("application/json", Some(Json)),
            // Quality beats order; q=0 refuses.
            (
                "application/json;q=0.5, application/graphql-response+json",
                Some(GraphqlResponse),
            ),
            (
                "application/graphql-response+json;q=0.5, application/json",
                Some(Json),
            ),
            ("application/json;q=0, */*", Some(GraphqlResponse)),
            (
                "application/graphql-response+json;q=0, application/*",
                Some(Json),
            ),
            // A type named outright beats a wildcard of equal quality, whatever the order.
            (
                "*/*, application/graphql-response+json",
                Some(GraphqlResponse),
            ),
            // Wildcards alone: the legacy type.
            ("*/*", Some(Json)),
            ("application/*", Some(Json)),
            ("text/html, */*;q=0.8", Some(Json)),
            // Case of the type does not matter.
            ("Application/GraphQL-Response+JSON", Some(GraphqlResponse)),
            // Neither: 406.
            ("text/html", None),
            ("application/xml, text/*", None),
            ("application/json;q=0", None),
        ] {
            assert_eq!(pick(accept), expected, "{accept}");
        }
    }

    #[test]
    fn no_accept_header_means_the_graphql_response_type() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(negotiate(&req), Some(Media::GraphqlResponse));
    }
}
