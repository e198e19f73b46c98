//! Paging rules shared by every listing RPC (API.md): `page` is 1-based (0 means 1),
//! `page_size` defaults to 20 and is clamped to 100; negative values are `INVALID_ARGUMENT`.

use tonic::Status;

/// Default page size when the request leaves it 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page size; larger requests are clamped.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Largest page number accepted (keeps `OFFSET` arithmetic far from overflow).
pub const MAX_PAGE: u32 = 1_000_000;

/// A validated page window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: u32,
    /// Rows per page, 1..=100.
    pub size: u32,
}

impl Page {
    /// Validates the raw request fields.
    pub fn parse(page: i32, page_size: i64) -> Result<Page, Status> {
        if page < 0 {
            return Err(Status::invalid_argument("page must not be negative"));
        }
        if page_size < 0 {
            return Err(Status::invalid_argument("page_size must not be negative"));
        }
        let page = u32::try_from(page).unwrap_or(0).max(1);
        if page > MAX_PAGE {
            return Err(Status::invalid_argument(format!(
                "page must be at most {MAX_PAGE}"
            )));
        }
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => u32::try_from(n.min(i64::from(MAX_PAGE_SIZE))).unwrap_or(MAX_PAGE_SIZE),
        };
        Ok(Page { page, size })
    }

    /// `LIMIT` value.
    pub fn limit(&self) -> i64 {
        i64::from(self.size)
    }

    /// `OFFSET` value.
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_clamps() {
        assert_eq!(Page::parse(0, 0).unwrap(), Page { page: 1, size: 20 });
        assert_eq!(Page::parse(3, 1000).unwrap(), Page { page: 3, size: 100 });
        assert_eq!(Page::parse(2, 10).unwrap().offset(), 10);
        assert_eq!(
            Page::parse(-1, 10).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            Page::parse(1, -5).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            Page::parse(i32::MAX, 10).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(Page::parse(1, i64::MAX).unwrap().size, 100);
    }
}
