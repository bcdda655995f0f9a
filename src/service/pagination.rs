//! Keyset pagination: a page is "the next `first` rows after this key", so a page deep in a
//! list costs what the first page costs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 200;

/// A validated page request; `after` is the decoded sort key of the last row seen.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            // 0 is a Relay page too: no edges, with `totalCount` and `hasNextPage`.
            Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => n as u64,
            Some(_) => {
                return Err(Error::bad_input(format!(
                    "first must be between 0 and {MAX_PAGE_SIZE}"
                )));
            }
        };
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self { first, after })
    }

    /// Rows to fetch: one more than asked tells whether another page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Trims the look-ahead row fetched by `fetch_limit`.
    pub fn from_lookahead(mut rows: Vec<T>, request: &PageRequest) -> Self {
        let has_next_page = rows.len() as u64 > request.first;
        rows.truncate(request.first as usize);
        Self {
            items: rows,
            has_next_page,
        }
    }
}

/// Cursors are opaque to clients: base64url of the sort key.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let invalid = || Error::bad_input("after is not a valid cursor");
    if cursor.len() > 1024 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_bounded_and_cursors_round_trip() {
        assert!(PageRequest::parse(Some(-1), None).is_err());
        assert_eq!(PageRequest::parse(Some(0), None).unwrap().fetch_limit(), 1);
        assert!(PageRequest::parse(Some(201), None).is_err());
        assert_eq!(PageRequest::parse(None, None).unwrap().first, 20);
        let cursor = encode_cursor("user-42");
        let page = PageRequest::parse(Some(5), Some(&cursor)).unwrap();
        assert_eq!(page.after.as_deref(), Some("user-42"));
        assert!(PageRequest::parse(None, Some("!!")).is_err());
    }
}
