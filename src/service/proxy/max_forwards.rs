//! `Max-Forwards` through the raw route (RFC 9110 §7.6.2). There Keyway is an intermediary,
//! and an intermediary that receives an `OPTIONS` (or a `TRACE`, which Keyway refuses anyway)
//! carrying this field must decrement it before forwarding; at zero it must not forward the
//! request but answer it as the final recipient. That is how a client asks what one hop of a
//! chain supports. Other methods' `Max-Forwards` pass unchanged: the RFC lets a recipient
//! ignore it there. The `proxy` mutation is no intermediary (Keyway makes that request itself)
//! and passes the caller's value as given.

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue, MAX_FORWARDS};

use crate::error::{Error, Result};

/// What becomes of a call once its `Max-Forwards` is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Hop {
    /// Sent on to the provider (with the field decremented, if it had one).
    Forward,
    /// It may go no further: Keyway answers it itself, and the provider hears nothing.
    AnswerHere,
}

/// The largest value Keyway passes on; a larger one received is sent as this (the RFC's
/// "recipient's maximum supported value").
const MAX_SUPPORTED: u64 = u32::MAX as u64;

/// Reads the caller's `Max-Forwards` and, when the call goes on, leaves in `headers` the value
/// to send. A value that is not `1*DIGIT`, or more than one field line, is refused.
pub fn apply(method: &Method, headers: &mut HeaderMap) -> Result<Hop> {
    if method != Method::OPTIONS {
        return Ok(Hop::Forward);
    }
    let mut values = headers.get_all(MAX_FORWARDS).iter();
    let Some(value) = values.next() else {
        return Ok(Hop::Forward);
    };
    let received = match (parse(value.as_bytes()), values.next()) {
        (Some(received), None) => received,
        _ => return Err(Error::bad_input("Max-Forwards must be one decimal number")),
    };
    if received == 0 {
        return Ok(Hop::AnswerHere);
    }
    let next = (received - 1).min(MAX_SUPPORTED);
    headers.insert(MAX_FORWARDS, HeaderValue::from(next));
    Ok(Hop::Forward)
}

/// `1*DIGIT`; a number too large for a `u64` reads as the largest one.
fn parse(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(MAX_FORWARDS, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn sent(method: Method, values: &[&str]) -> (Hop, Vec<String>) {
        let mut headers = with(values);
        let hop = apply(&method, &mut headers).unwrap();
        let left = headers
            .get_all(MAX_FORWARDS)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (hop, left)
    }

    #[test]
    fn options_is_decremented_and_stops_at_zero() {
        assert_eq!(
            sent(Method::OPTIONS, &["3"]),
            (Hop::Forward, vec!["2".into()])
        );
        assert_eq!(
            sent(Method::OPTIONS, &["1"]),
            (Hop::Forward, vec!["0".into()])
        );
        assert_eq!(sent(Method::OPTIONS, &["0"]).0, Hop::AnswerHere);
        assert_eq!(sent(Method::OPTIONS, &["00"]).0, Hop::AnswerHere);
        assert_eq!(sent(Method::OPTIONS, &[]), (Hop::Forward, vec![]));
        let huge = sent(Method::OPTIONS, &["99999999999999999999999"]);
        assert_eq!(huge, (Hop::Forward, vec![u32::MAX.to_string()]));
    }

    #[test]
    fn other_methods_pass_it_unchanged() {
        assert_eq!(sent(Method::GET, &["0"]), (Hop::Forward, vec!["0".into()]));
        assert_eq!(sent(Method::POST, &["x"]), (Hop::Forward, vec!["x".into()]));
    }

    #[test]
    fn a_malformed_value_is_refused() {
        for values in [&["-1"][..], &["1, 2"], &["two"], &[""], &["1", "2"]] {
            let err = apply(&Method::OPTIONS, &mut with(values)).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT", "{values:?}");
        }
    }
}
