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
