//! Parsed GraphQL documents, kept by their text.
//!
//! Clients send the same few documents over and over (their variables change, the text does
//! not), and parsing is costly: async-graphql's parser is a PEG over every character. On the
//! `proxy` mutation it was 15% of the server's CPU samples. A document is pure syntax, the
//! same whatever the schema or the caller, so a copy of an earlier parse serves any request
//! with the same text.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};

/// Longer documents are parsed every time: rare, and they would crowd out the common ones.
const MAX_KEPT_TEXT: usize = 8 * 1024;
/// Bytes of document text kept in all. A parsed document takes several times its text; this
/// bounds the whole cache to a few megabytes.
const KEPT_TEXT_BYTES: u64 = 512 * 1024;

pub struct DocumentCache(moka::sync::Cache<String, Arc<ExecutableDocument>>);

impl Default for DocumentCache {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(KEPT_TEXT_BYTES)
                .weigher(|text: &String, _| u32::try_from(text.len()).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl DocumentCache {
    /// Gives the request its parsed document: a copy of an earlier parse of the same text, or
    /// a new parse (kept when it succeeds). The error is the parser's, the answer async-graphql
    /// itself gives a document that does not parse; such a request is answered with it and
    /// never parsed again.
    pub fn prepare(&self, request: &mut Request) -> Result<(), ServerError> {
        if let Some(document) = self.0.get(request.query.as_str()) {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return Ok(());
        }
        let keep = request.query.len() <= MAX_KEPT_TEXT;
        let document = request.parsed_query()?;
        if keep {
            let document = Arc::new(document.clone());
            self.0.insert(request.query.clone(), document);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation_names(request: &mut Request) -> Vec<String> {
        let document = request.parsed_query().expect("prepared");
        document
            .operations
            .iter()
            .map(|(name, _)| name.map(|n| n.to_string()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_text_parsed_before_gets_a_copy_of_its_document() {
        let cache = DocumentCache::default();
        let text = "query A { viewer { kind } }";
        cache.prepare(&mut Request::new(text)).unwrap();
        assert!(cache.0.contains_key(text));
        let mut again = Request::new(text);
        cache.prepare(&mut again).unwrap();
        assert_eq!(operation_names(&mut again), ["A"]);
        // Another text is parsed for itself, not served the first one's document.
        let mut other = Request::new("query B { viewer { kind } }");
        cache.prepare(&mut other).unwrap();
        assert_eq!(operation_names(&mut other), ["B"]);
    }

    #[test]
    fn what_does_not_parse_is_the_parsers_error_and_is_not_kept() {
        let cache = DocumentCache::default();
        let text = "{ viewer { kind ";
        let error = cache.prepare(&mut Request::new(text)).unwrap_err();
        assert!(error.message.contains("expected"), "{}", error.message);
        assert!(!cache.0.contains_key(text));
    }

    #[test]
    fn long_documents_are_parsed_but_not_kept() {
        let cache = DocumentCache::default();
        let long = format!("{{ viewer {{ kind }} }} {}", "#".repeat(MAX_KEPT_TEXT));
        let mut request = Request::new(long.as_str());
        cache.prepare(&mut request).unwrap();
        assert!(!cache.0.contains_key(long.as_str()));
        assert_eq!(operation_names(&mut request), [""]);
    }
}
