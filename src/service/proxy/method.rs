//! Which methods a call to a provider may use. The raw route passes the caller's method on,
//! extension methods included (WebDAV's `PROPFIND`, say), with two exceptions; the `proxy`
//! mutation takes the methods of a REST API only.

use reqwest::Method;

use crate::error::{Error, Result};

/// What a 405 answer lists (RFC 9110 §15.5.6 asks for the methods the route supports; the
/// raw route also passes extension methods, which no list can name).
pub const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The raw route's method: any valid one but these two.
/// - `TRACE`: its answer echoes the request as received, so the credential Keyway injects
///   would come back to the caller; RFC 9110 §9.3.8 forbids sending credentials in one.
/// - `CONNECT`: it asks for a tunnel to a host (§9.3.6); a call through Keyway is a request to
///   a path under the provider's base URL, never a tunnel.
pub fn forwarded(name: &str) -> Result<Method> {
    let method =
        Method::from_bytes(name.as_bytes()).map_err(|_| Error::bad_input("invalid method"))?;
    if method == Method::TRACE || method == Method::CONNECT {
        return Err(Error::MethodNotAllowed {
            why: "TRACE and CONNECT are never sent to a provider",
            allow: ALLOWED,
        });
    }
    Ok(method)
}

/// The `proxy` mutation's method (any case): one of `ALLOWED`.
pub fn listed(name: &str) -> Result<Method> {
    const LISTED: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    LISTED
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::bad_input(format!("method must be one of {ALLOWED}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_route_passes_any_method_but_trace_and_connect() {
        assert_eq!(forwarded("GET").unwrap(), Method::GET);
        assert_eq!(forwarded("PROPFIND").unwrap().as_str(), "PROPFIND");
        for refused in ["TRACE", "CONNECT"] {
            let err = forwarded(refused).unwrap_err();
            assert_eq!(
                err.status(),
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED
            );
            assert_eq!(err.code(), "BAD_USER_INPUT");
        }
        assert_eq!(forwarded("GE T").unwrap_err().code(), "BAD_USER_INPUT");
    }

    #[test]
    fn the_mutation_takes_the_listed_methods_in_any_case() {
        assert_eq!(listed("patch").unwrap(), Method::PATCH);
        assert_eq!(listed("OPTIONS").unwrap(), Method::OPTIONS);
        for refused in ["TRACE", "CONNECT", "PROPFIND", ""] {
            assert_eq!(
                listed(refused).unwrap_err().code(),
                "BAD_USER_INPUT",
                "{refused}"
            );
        }
    }
}
