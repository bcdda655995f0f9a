//! Limits checked on the parsed document, before validation and before any database work:
//! aliases and total field selections. (Depth and complexity are async-graphql's own limits,
//! set in `schema.rs`; batch size is checked by the HTTP transport.)

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

pub const MAX_ALIASES: usize = 30;
pub const MAX_FIELDS: usize = 1000;

pub struct DocumentLimits {
    /// When off, `__schema` and `__type` are refused with an error (async-graphql's own
    /// switch answers them with a silent `null`, which clients misread as an empty schema).
    pub introspection: bool,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentLimitsExtension {
            introspection: self.introspection,
        })
    }
}

struct DocumentLimitsExtension {
    introspection: bool,
}

#[async_trait::async_trait]
impl Extension for DocumentLimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let mut counts = Counts::default();
        for (_, operation) in document.operations.iter() {
            counts.walk(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            counts.walk(&fragment.node.selection_set.node);
        }
        if !self.introspection && counts.introspection {
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
        Ok(document)
    }
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

fn limit_error(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "BAD_USER_INPUT");
    error
}
