//! Token-endpoint answers as providers really send them, made into RFC 6749 §5 answers before
//! the `oauth2` crate reads them. The crate is strict, and each of these failed a whole
//! connection or refresh:
//! - no `token_type` (Shopify, LinkedIn): the token is a bearer token, so `Bearer`;
//! - `expires_in` as a string (`"3599"`, Azure AD v1) or a fraction: whole seconds;
//! - an error with a 2xx status (GitHub, Zoho, Slack's `ok: false`): read as the §5.2 error
//!   it is, so a dead grant is told apart from a network failure;
//! - a dead refresh token by another name (GitHub's `bad_refresh_token`, Slack's
//!   `invalid_refresh_token`): `invalid_grant`, so the connection is declared invalid in time
//!   instead of being retried for ever;
//! - `scope` as an array (Twitch): the space-separated string RFC 6749 §3.3 defines;
//! - JSON labelled `text/plain` or `text/javascript`: JSON.
//!
//! Anything that is not a JSON object is passed on untouched, for the crate to refuse.

use oauth2::HttpResponse;
use oauth2::http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

pub fn normalize(response: HttpResponse) -> HttpResponse {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(response.body()) else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    if parts.status.is_success() && is_error(&body) {
        parts.status = StatusCode::BAD_REQUEST;
    }
    if let Some(Value::String(error)) = body.get("error")
        && DEAD_GRANT_SYNONYMS.contains(&error.as_str())
    {
        body.insert("error".into(), Value::from("invalid_grant"));
    }
    if body.contains_key("access_token") {
        if body.get("token_type").is_none_or(Value::is_null) {
            body.insert("token_type".into(), Value::from("Bearer"));
        }
        match body.get("expires_in").map(whole_seconds) {
            Some(Some(secs)) => {
                body.insert("expires_in".into(), Value::from(secs));
            }
            // Unreadable: as if the provider had not said (the token is used until refused).
            Some(None) => {
                body.remove("expires_in");
            }
            None => {}
        }
        if let Some(Value::Array(scopes)) = body.get("scope") {
            let joined: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
            body.insert("scope".into(), Value::from(joined.join(" ")));
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    HttpResponse::from_parts(parts, bytes)
}

/// Error codes some providers use where RFC 6749 §5.2 says `invalid_grant`.
const DEAD_GRANT_SYNONYMS: &[&str] = &["bad_refresh_token", "invalid_refresh_token"];

fn is_error(body: &Map<String, Value>) -> bool {
    body.get("error").is_some_and(Value::is_string) && !body.contains_key("access_token")
}

fn whole_seconds(value: &Value) -> Option<u64> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, content_type: &str, body: &str) -> HttpResponse {
        oauth2::http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn body_of(response: &HttpResponse) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn a_token_without_a_type_is_a_bearer_token() {
        let shopify = answer(
            200,
            "application/json",
            r#"{"access_token":"shpat_1","scope":"read_orders,write_orders"}"#,
        );
        let normalized = normalize(shopify);
        assert_eq!(normalized.status(), 200);
        assert_eq!(body_of(&normalized)["token_type"], "Bearer");
        assert!(normalized.headers().get(header::CONTENT_LENGTH).is_none());
    }

    #[test]
    fn expires_in_becomes_whole_seconds() {
        for (given, expected) in [
            (r#""3599""#, Some(3599)),
            (r#"" 60 ""#, Some(60)),
            ("3600.0", Some(3600)),
            ("7200", Some(7200)),
            (r#""soon""#, None),
            ("-5", None),
            ("null", None),
        ] {
            let body =
                format!(r#"{{"access_token":"t","token_type":"bearer","expires_in":{given}}}"#);
            let normalized = body_of(&normalize(answer(200, "application/json", &body)));
            assert_eq!(normalized["expires_in"].as_u64(), expected, "{given}");
            assert_eq!(normalized["token_type"], "bearer", "a given type is kept");
        }
    }

    #[test]
    fn scopes_given_as_an_array_are_space_separated() {
        let twitch = answer(
            200,
            "application/json",
            r#"{"access_token":"t","token_type":"bearer","scope":["user:read:email","chat:read"]}"#,
        );
        assert_eq!(
            body_of(&normalize(twitch))["scope"],
            "user:read:email chat:read"
        );
    }

    #[test]
    fn an_error_sent_with_200_is_an_error() {
        let github = answer(
            200,
            "application/json; charset=utf-8",
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
        );
        let normalized = normalize(github);
        assert_eq!(normalized.status(), 400);
        assert_eq!(body_of(&normalized)["error"], "bad_verification_code");
        let slack = answer(
            200,
            "application/json",
            r#"{"ok":false,"error":"invalid_code"}"#,
        );
        assert_eq!(normalize(slack).status(), 400);
        let dead = answer(
            200,
            "application/json",
            r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#,
        );
        let normalized = body_of(&normalize(dead));
        assert_eq!(normalized["error"], "invalid_grant");
        assert_eq!(
            normalized["error_description"],
            "The refresh token passed is incorrect or expired."
        );
        // A real error status stays as it is.
        let refused = answer(401, "application/json", r#"{"error":"invalid_client"}"#);
        assert_eq!(normalize(refused).status(), 401);
    }

    #[test]
    fn json_under_another_label_is_json_and_the_rest_is_untouched() {
        let labelled = answer(
            200,
            "text/plain",
            r#"{"access_token":"t","token_type":"Bearer"}"#,
        );
        let normalized = normalize(labelled);
        assert_eq!(
            normalized.headers()[header::CONTENT_TYPE],
            "application/json"
        );
        let form = answer(
            200,
            "application/x-www-form-urlencoded",
            "access_token=t&token_type=bearer",
        );
        let untouched = normalize(form);
        assert_eq!(untouched.body(), b"access_token=t&token_type=bearer");
        assert_eq!(
            untouched.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }
}
