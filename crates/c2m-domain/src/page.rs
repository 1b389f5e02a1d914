//! Paging for list calls: a page size and an opaque cursor.

use serde::{Deserialize, Serialize};

use crate::DomainError;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A validated page request. The cursor is the store's insertion sequence of the last item
/// already seen, so pages stay stable while new items arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<i64>,
}

impl PageRequest {
    /// `size` 0 means the default; `token` empty means the first page.
    pub fn parse(size: u32, token: &str) -> Result<Self, DomainError> {
        if size > MAX_PAGE_SIZE {
            return Err(DomainError::invalid(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
        let after = if token.is_empty() {
            None
        } else {
            Some(
                token
                    .strip_prefix("p")
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        DomainError::invalid("page_token", "not a token this server issued")
                    })?,
            )
        };
        Ok(PageRequest { size, after })
    }

    pub fn first(size: u32) -> Self {
        PageRequest { size, after: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor to pass for the next page; `None` on the last page.
    pub next_after: Option<i64>,
}

impl<T> Page<T> {
    pub fn next_token(&self) -> String {
        self.next_after.map(|n| format!("p{n}")).unwrap_or_default()
    }
}
