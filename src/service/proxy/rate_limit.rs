//! Waiting out a provider's 429 (SPEC §5: "returns the provider's answer with `Retry-After`,
//! optionally waits within a bound"). The caller opts in per call with the longest wait it
//! accepts; the operator's `proxy_rate_limit_wait_max_secs` bounds what any caller may ask.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::Config;
use crate::error::{Error, Result};

/// The raw route's way to ask for a wait: `Keyway-Rate-Limit-Wait: <seconds>` (never sent on
/// to the provider: `headers::never_forwarded`).
pub const WAIT_HEADER: &str = "keyway-rate-limit-wait";

/// The wait a caller asked for (whole seconds, none: zero), at most the operator's bound.
pub fn allowed_wait(config: &Config, asked_secs: Option<i64>) -> Result<Duration> {
    let Some(asked) = asked_secs else {
        return Ok(Duration::ZERO);
    };
    let asked = u64::try_from(asked)
        .map_err(|_| Error::bad_input("the rate limit wait must be zero or more seconds"))?;
    Ok(Duration::from_secs(
        asked.min(config.proxy_rate_limit_wait_max_secs),
    ))
}

/// The raw route's `Keyway-Rate-Limit-Wait` header (its value, if sent), read as
/// `allowed_wait` reads the mutation's argument.
pub fn wait_from_header(config: &Config, value: Option<&[u8]>) -> Result<Duration> {
    let Some(value) = value else {
        return Ok(Duration::ZERO);
    };
    let secs = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            Error::bad_input("Keyway-Rate-Limit-Wait must be a whole number of seconds")
        })?;
    allowed_wait(config, Some(i64::from(secs)))
}

/// How long a 429's `Retry-After` asks to wait (RFC 9110 §10.2.3: delay-seconds or an
/// HTTP-date; a date already past is no wait). None without one, or with one unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T08:49:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let read = |value: &str| retry_after(&with_retry_after(value), now);
        assert_eq!(read("7"), Some(Duration::from_secs(7)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            read("Sun, 06 Dec 2026 08:49:37 GMT"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            read("Sun, 06 Dec 2026 08:49:00 GMT"),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(read("-3"), None);
        assert_eq!(read("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_wait_asked_for_is_bounded_by_the_operator() {
        let config = Config {
            proxy_rate_limit_wait_max_secs: 10,
            ..Config::default()
        };
        let wait = |asked| allowed_wait(&config, asked).map_err(|e| e.code());
        assert_eq!(wait(None), Ok(Duration::ZERO));
        assert_eq!(wait(Some(3)), Ok(Duration::from_secs(3)));
        assert_eq!(wait(Some(60)), Ok(Duration::from_secs(10)));
        assert_eq!(wait(Some(-1)), Err("BAD_USER_INPUT"));
        let header = |value: Option<&str>| {
            wait_from_header(&config, value.map(str::as_bytes)).map_err(|e| e.code())
        };
        assert_eq!(header(Some(" 5")), Ok(Duration::from_secs(5)));
        assert_eq!(header(Some("x")), Err("BAD_USER_INPUT"));
        assert_eq!(header(Some("-1")), Err("BAD_USER_INPUT"));
        assert_eq!(header(None), Ok(Duration::ZERO));
    }
}
