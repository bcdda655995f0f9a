//! `GET /graphql`: the GraphiQL page (when enabled), never an operation.

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::http::GraphiQLSource;

use super::graphql::error_response;
use super::graphql_answer::{self, Media};
use crate::error::Error;
use crate::state::AppState;

/// GraphiQL; or, for a GraphQL request sent as a GET (`?query=…`, as some clients can), a 405
/// naming POST: operations run only from a POST body, so none runs from a link or a logged URL.
pub async fn graphiql(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let is_graphql_request = req
        .query_string()
        .split('&')
        .any(|pair| pair == "query" || pair.starts_with("query="));
    if is_graphql_request {
        let media = graphql_answer::negotiate(&req).unwrap_or(Media::Json);
        let mut answer = error_response(
            &Error::bad_input("GraphQL requests are sent with POST"),
            StatusCode::METHOD_NOT_ALLOWED,
            media,
        );
        answer.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static("POST"),
        );
        return answer;
    }
    if !state.config.graphiql_enabled() {
        return error_response(&Error::NotFound, StatusCode::NOT_FOUND, Media::Json);
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .title("Keyway GraphQL")
                .finish(),
        )
}
