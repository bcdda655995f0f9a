//! Relay cursor connections built from service pages.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{ObjectType, OutputType};

use crate::service::pagination::{Page, encode_cursor};

pub fn connection<M, N, F>(
    page: Page<M>,
    cursor_key: impl Fn(&M) -> String,
    to_node: impl Fn(M) -> N,
    fields: F,
) -> Connection<String, N, F, EmptyFields>
where
    N: OutputType,
    F: ObjectType,
{
    let mut connection = Connection::with_additional_fields(false, page.has_next_page, fields);
    connection.edges = page
        .items
        .into_iter()
        .map(|item| Edge::new(encode_cursor(&cursor_key(&item)), to_node(item)))
        .collect();
    connection
}

/// The complexity of a page of `first` items: the page size as the resolver will take it.
/// Clamped, so that a `first` out of range is refused by the resolver with its own message
/// ("first must be between 0 and 200") rather than as "Query is too complex".
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    use crate::service::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
    let size = first.map_or(DEFAULT_PAGE_SIZE, |f| {
        f.clamp(0, MAX_PAGE_SIZE as i32) as u64
    });
    size as usize * child_complexity
}
