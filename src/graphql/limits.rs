//! Limits checked on the parsed document, before validation and before any database work:
//! aliases and total field selections (`admission` runs them). Depth and complexity are
//! async-graphql's own limits, set in `build_schema`; batch size is checked by the HTTP
//! transport. Selection sets nest at most 64 deep (the parser's bound), which bounds the walk.

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

pub const MAX_ALIASES: usize = 30;
pub const MAX_FIELDS: usize = 1000;

/// Refuses a document over the alias or field limits, or one asking for the schema
/// (`__schema`, `__type`) when introspection is off: async-graphql's own switch answers those
/// with a silent `null`, which clients misread as an empty schema.
pub fn check(document: &ExecutableDocument, introspection: bool) -> Result<(), ServerError> {
    let mut counts = Counts::default();
    for (_, operation) in document.operations.iter() {
        counts.walk(&operation.node.selection_set.node);
    }
    for fragment in document.fragments.values() {
        counts.walk(&fragment.node.selection_set.node);
    }
    if !introspection && counts.introspection {
        return Err(limit_error(
            "introspection is disabled on this server".into(),
        ));
    }
    if counts.aliases > MAX_ALIASES {
        return Err(limit_error(format!(
            "the query uses {} aliases; at most {MAX_ALIASES} are allowed",
            counts.aliases
        )));
    }
    if counts.fields > MAX_FIELDS {
        return Err(limit_error(format!(
            "the query selects {} fields; at most {MAX_FIELDS} are allowed",
            counts.fields
        )));
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    aliases: usize,
    fields: usize,
    introspection: bool,
}

impl Counts {
    fn walk(&mut self, set: &SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    let name = field.node.name.node.as_str();
                    self.introspection |= name == "__schema" || name == "__type";
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    self.walk(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => self.walk(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

/// async-graphql refuses a document over the depth or complexity limit with a bare "Query is
/// too complex."; the caller needs to know what is counted to get under it.
pub fn explain(error: &mut ServerError) {
    use super::{MAX_COMPLEXITY, MAX_DEPTH, ROW_QUERY_COST};
    let explained = match error.message.as_str() {
        "Query is too complex." => format!(
            "the query costs more than {MAX_COMPLEXITY}: a field costs 1, a list `first` times \
             its selection, and a field that queries the database for each row \
             {ROW_QUERY_COST}; ask for fewer rows or fields"
        ),
        "Query is nested too deep." => {
            format!("the query nests deeper than {MAX_DEPTH} levels")
        }
        _ => return,
    };
    error.message = explained;
}

fn limit_error(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "BAD_USER_INPUT");
    error
}
