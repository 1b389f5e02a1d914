//! Paging for list calls: a page size and an opaque cursor bound to its query.
//!
//! A page token is `p<after>.<query>`: the store's insertion sequence of the last item
//! already seen, and a fingerprint of the query it continues ([`PageQuery`]: the call and
//! its filter). The sequence is store-wide, so a position taken from one listing is a
//! position in any other, and a token passed with another query was read as one: campaign
//! B's cursor, given with campaign A's filter, skipped A's pre-orders without a word. With
//! its query in it, a token is refused anywhere but the query that issued it. Tokens of
//! servers before this one (`p<after>`) name no query and are refused too: the listing
//! starts again from its first page.

use serde::{Deserialize, Serialize};

use crate::{DomainError, Fingerprint};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// The query a page token continues: the call and its filter, as a fingerprint (the
/// first 64 bits of the request fingerprint idempotency keys use,
/// [`Fingerprint::of`]), so a token stays short whatever the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery(u64);

impl PageQuery {
    /// The query of `call` (the RPC, `ListPreorders`) with `filter`: its fields as the
    /// server read them, always in the same order, an absent one empty (hashed as a JSON
    /// list, so no two lists of parts are the same text).
    pub fn new(call: &str, filter: &[&str]) -> Self {
        // A fingerprint is 64 hex digits, so its first 16 always read as a u64.
        let fingerprint = Fingerprint::of(call, &filter);
        PageQuery(u64::from_str_radix(&fingerprint.as_str()[..16], 16).unwrap_or_default())
    }
}

/// A validated page request. The cursor is the store's insertion sequence of the last item
/// already seen, so pages stay stable while new items arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<i64>,
}

impl PageRequest {
    /// `size` 0 means the default; `token` empty means the first page. A token must be one
    /// this server issued for `query`.
    pub fn parse(size: u32, token: &str, query: PageQuery) -> Result<Self, DomainError> {
        if size > MAX_PAGE_SIZE {
            return Err(DomainError::invalid(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
        if token.is_empty() {
            return Ok(PageRequest { size, after: None });
        }
        let issued = |n: &str| n.parse::<i64>().ok().filter(|n| *n >= 0);
        let Some(rest) = token.strip_prefix("p") else {
            return Err(not_issued());
        };
        let Some((after, of)) = rest.split_once('.') else {
            return Err(match issued(rest) {
                Some(_) => DomainError::invalid(
                    "page_token",
                    "a token of an older server, which does not say which listing it \
                     continues: list again from the first page",
                ),
                None => not_issued(),
            });
        };
        let (Some(after), Some(of)) = (issued(after), parse_query(of)) else {
            return Err(not_issued());
        };
        if of != query {
            return Err(DomainError::invalid(
                "page_token",
                "a token of another listing (another call, or another filter): pass the \
                 token with the request it came from, or list again from the first page",
            ));
        }
        Ok(PageRequest {
            size,
            after: Some(after),
        })
    }

    pub fn first(size: u32) -> Self {
        PageRequest { size, after: None }
    }
}

fn not_issued() -> DomainError {
    DomainError::invalid("page_token", "not a token this server issued")
}

/// The query part of a token: 16 lower-case hex digits, as [`Page::next_token`] writes it.
fn parse_query(hex: &str) -> Option<PageQuery> {
    let digits = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    digits
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(PageQuery)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor to pass for the next page; `None` on the last page.
    pub next_after: Option<i64>,
}

impl<T> Page<T> {
    /// The token of the next page of `query`, the query this page answered; empty on the
    /// last page.
    pub fn next_token(&self, query: PageQuery) -> String {
        self.next_after
            .map(|n| format!("p{n}.{:016x}", query.0))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_and_message(e: DomainError) -> (String, String) {
        match e {
            DomainError::InvalidArgument { field, reason } => (field, reason),
            other => panic!("not an invalid field: {other:?}"),
        }
    }

    /// A token reads back only with the query that issued it: another call, or the same
    /// call with another filter, is refused naming `page_token` (a token from campaign B's
    /// listing used to skip campaign A's pre-orders), and so is an older server's token,
    /// which names no query.
    #[test]
    fn a_token_continues_only_its_own_query() {
        let b = PageQuery::new("ListPreorders", &["", "cmp-b"]);
        let a = PageQuery::new("ListPreorders", &["", "cmp-a"]);
        let campaigns = PageQuery::new("ListCampaigns", &[]);
        let page = Page::<()> {
            items: vec![],
            next_after: Some(42),
        };
        let token = page.next_token(b);
        assert_eq!(PageRequest::parse(2, &token, b).unwrap().after, Some(42));
        for other in [a, campaigns] {
            let (field, why) = field_and_message(PageRequest::parse(2, &token, other).unwrap_err());
            assert_eq!(field, "page_token");
            assert!(why.contains("another listing"), "{why}");
        }
        let (field, why) = field_and_message(PageRequest::parse(2, "p42", b).unwrap_err());
        assert_eq!(field, "page_token");
        assert!(why.contains("older server"), "{why}");
        for bad in [
            "x",
            "p",
            "p-1.0000000000000000",
            "p1.00",
            "p1.000000000000000G",
        ] {
            let (field, why) = field_and_message(PageRequest::parse(2, bad, b).unwrap_err());
            assert_eq!(
                (field.as_str(), why.as_str()),
                ("page_token", "not a token this server issued"),
                "{bad}"
            );
        }
        // The parts are told apart: a filter is not the call's name run into it.
        assert_ne!(
            PageQuery::new("ListPreorders", &["a", "b"]),
            PageQuery::new("ListPreorders", &["ab", ""])
        );
        assert_eq!(
            Page::<()> {
                items: vec![],
                next_after: None
            }
            .next_token(b),
            ""
        );
    }
}
