//! The root fields a GraphQL document selects, read from the parsed document before it runs:
//! what the per-key rate limit charges for (`count`) and what a request log calls the
//! operation (`names`). Fragments at the root are followed; nesting past `MAX_DEPTH` fragments
//! counts nothing (validation refuses such documents anyway).

use std::collections::HashSet;
use std::sync::OnceLock;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet, TypeKind,
    TypeSystemDefinition,
};

const MAX_DEPTH: usize = 10;

/// Root fields of the costliest operation in the document, aliases included (`a: viewer
/// b: viewer` is two). Only one operation runs; charging the largest means a document costs
/// the same whatever `operationName` says, including a name that matches none.
pub fn count(document: &ExecutableDocument) -> usize {
    let count_of = |op: &OperationDefinition| {
        let mut n = 0;
        visit(document, &op.selection_set.node, 0, &mut |_| n += 1);
        n
    };
    match &document.operations {
        DocumentOperations::Single(op) => count_of(&op.node),
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| count_of(&op.node)).max().unwrap_or(0)
        }
    }
}

/// The names (not aliases: those are the caller's words) of the fields at the root of the
/// operation that runs, each once, in document order (`["consumer", "connections"]`). The
/// operation is chosen as async-graphql chooses it: the one named `operation_name`, else the
/// only one; none when there is no such operation (execution refuses the request). A name
/// may still be one the schema lacks: see `is_schema_root_field`.
pub fn names<'d>(document: &'d ExecutableDocument, operation_name: Option<&str>) -> Vec<&'d str> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(wanted)) => ops.get(wanted).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    };
    let Some(operation) = operation else {
        return Vec::new();
    };
    let mut names: Vec<&str> = Vec::new();
    visit(document, &operation.selection_set.node, 0, &mut |name| {
        if !names.contains(&name) {
            names.push(name);
        }
    });
    names
}

static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();

/// Reads the schema's root fields once, when the schema is built, so that no request pays
/// for it.
pub fn learn(schema: &super::KeywaySchema) {
    KNOWN.get_or_init(|| schema_root_fields(&schema.sdl()));
}

/// Whether `name` is a root field of Keyway's schema (of its query, mutation or subscription
/// root, or an introspection field). What a caller writes in a document is its own text: only
/// the schema's words go into a log row.
pub fn is_schema_root_field(name: &str) -> bool {
    KNOWN
        .get_or_init(|| schema_root_fields(&super::sdl()))
        .contains(name)
}

/// The root fields an SDL declares, and the introspection fields every root type has.
fn schema_root_fields(sdl: &str) -> HashSet<String> {
    let mut known: HashSet<String> = ["__typename", "__schema", "__type"]
        .map(str::to_owned)
        .into();
    let Ok(document) = async_graphql::parser::parse_schema(sdl) else {
        return known;
    };
    let roots: Vec<String> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            TypeSystemDefinition::Schema(schema) => Some(schema),
            _ => None,
        })
        .flat_map(|schema| {
            let s = &schema.node;
            [&s.query, &s.mutation, &s.subscription]
        })
        .flatten()
        .map(|name| name.node.to_string())
        .collect();
    for definition in &document.definitions {
        if let TypeSystemDefinition::Type(ty) = definition
            && roots.iter().any(|root| *root == *ty.node.name.node)
            && let TypeKind::Object(object) = &ty.node.kind
        {
            known.extend(object.fields.iter().map(|f| f.node.name.node.to_string()));
        }
    }
    known
}

/// Calls `field` with the name of every field at the root of `set`, through fragments.
fn visit<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    depth: usize,
    field: &mut impl FnMut(&'d str),
) {
    if depth > MAX_DEPTH {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(f) => field(f.node.name.node.as_str()),
            Selection::InlineFragment(f) => {
                visit(document, &f.node.selection_set.node, depth + 1, field)
            }
            Selection::FragmentSpread(spread) => {
                if let Some(f) = document.fragments.get(&spread.node.fragment_name.node) {
                    visit(document, &f.node.selection_set.node, depth + 1, field);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("test queries parse")
    }

    fn label(document: &ExecutableDocument, operation_name: Option<&str>) -> Option<String> {
        let names = names(document, operation_name);
        (!names.is_empty()).then(|| names.join(","))
    }

    #[test]
    fn aliases_count_each_but_label_once() {
        let doc = parsed(
            "{ a: viewer { id } b: viewer { id } connections(first: 1) { edges { cursor } } }",
        );
        assert_eq!(count(&doc), 3);
        assert_eq!(label(&doc, None).as_deref(), Some("viewer,connections"));
    }

    #[test]
    fn fragments_at_the_root_are_followed() {
        let doc = parsed(
            "query Q { ...Root ... on Query { consumers(first: 1) { edges { cursor } } } }
             fragment Root on Query { viewer { id } }",
        );
        assert_eq!(count(&doc), 2);
        assert_eq!(label(&doc, Some("Q")).as_deref(), Some("viewer,consumers"));
    }

    #[test]
    fn the_named_operation_is_the_one_labelled() {
        let doc = parsed(
            "query Big { viewer { id } consumers(first: 1) { edges { cursor } } }
             mutation Make { createConnectLink(input: {}) { url } }",
        );
        assert_eq!(count(&doc), 2, "the costliest operation is charged");
        assert_eq!(
            label(&doc, Some("Make")).as_deref(),
            Some("createConnectLink")
        );
        assert_eq!(
            label(&doc, Some("Big")).as_deref(),
            Some("viewer,consumers")
        );
        assert_eq!(label(&doc, Some("Missing")), None);
        assert_eq!(label(&doc, None), None, "which one runs is not known");
    }

    #[test]
    fn an_operation_is_chosen_as_execution_chooses_it() {
        let named = parsed("query Mine { viewer { id } }");
        assert_eq!(label(&named, Some("Mine")).as_deref(), Some("viewer"));
        assert_eq!(
            label(&named, None).as_deref(),
            Some("viewer"),
            "the only one runs"
        );
        assert_eq!(label(&named, Some("Other")), None);
        assert_eq!(label(&parsed("{ viewer { id } }"), Some("X")), None);
    }

    #[test]
    fn the_schema_root_fields_are_those_of_its_root_types() {
        for name in [
            "connections",
            "createConnectLink",
            "proxy",
            "connectionEvents",
            "__typename",
        ] {
            assert!(is_schema_root_field(name), "{name}");
        }
        // Fields of other types, and words the schema does not have, are not.
        for name in ["edges", "accessToken", "kw_sk_not_a_field", ""] {
            assert!(!is_schema_root_field(name), "{name}");
        }
    }

    #[test]
    fn fragments_that_nest_past_the_limit_stop() {
        // A cycle is invalid GraphQL, but the walk runs before validation.
        let doc = parsed("{ ...A } fragment A on Query { viewer { id } ...A }");
        assert_eq!(count(&doc), MAX_DEPTH);
        assert_eq!(label(&doc, None).as_deref(), Some("viewer"));
    }
}
