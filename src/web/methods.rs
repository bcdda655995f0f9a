//! Which methods a route answers. A route whose GET only reads answers HEAD too (RFC 9110
//! §9.3.2; load balancers often probe `/healthz` with HEAD), and a method a route does not
//! serve is 405 with `Allow` (§15.5.6), not the 404 of a path that does not exist.

use actix_web::dev::HttpServiceFactory;
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, web};

/// A route answering GET and HEAD with `handler`.
pub fn get<F, Args>(path: &str, handler: F) -> impl HttpServiceFactory + use<F, Args>
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    with_get(web::resource(path), handler, "GET, HEAD")
}

/// A route answering GET and HEAD with `get`, and POST with `post`.
pub fn get_and_post<G, GArgs, P, PArgs>(
    path: &str,
    get: G,
    post: P,
) -> impl HttpServiceFactory + use<G, GArgs, P, PArgs>
where
    G: Handler<GArgs> + Clone,
    GArgs: FromRequest + 'static,
    G::Output: Responder + 'static,
    P: Handler<PArgs>,
    PArgs: FromRequest + 'static,
    P::Output: Responder + 'static,
{
    with_get(
        web::resource(path).route(web::post().to(post)),
        get,
        "GET, HEAD, POST",
    )
}

/// A route answering POST only.
pub fn post<F, Args>(path: &str, handler: F) -> impl HttpServiceFactory + use<F, Args>
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    refusing_others(web::resource(path).route(web::post().to(handler)), "POST")
}

/// A route answering GET only: one whose GET acts (a WebSocket upgrade, a step of an OAuth
/// flow), which a HEAD must not.
pub fn get_only<F, Args>(path: &str, handler: F) -> impl HttpServiceFactory + use<F, Args>
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    refusing_others(web::resource(path).route(web::get().to(handler)), "GET")
}

fn with_get<F, Args>(resource: Resource, handler: F, allow: &'static str) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let resource = resource
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler));
    refusing_others(resource, allow)
}

/// Any method the resource has no route for is 405, naming those it has.
fn refusing_others(resource: Resource, allow: &'static str) -> Resource {
    resource.default_service(web::to(move || not_allowed(allow)))
}

async fn not_allowed(allow: &'static str) -> HttpResponse {
    crate::error::Error::MethodNotAllowed {
        why: "this route does not take that method (see Allow)",
        allow,
    }
    .to_http()
}
