//! Pieces of responses shared by several services.

use mall_proto::common::v1::BaseResp;

/// `BaseResp { code: 0, message: "success" }`, kept in auth and user responses for
/// compatibility with the original API (errors are statuses, not `BaseResp`).
pub fn success() -> Option<BaseResp> {
    Some(BaseResp {
        code: 0,
        message: "success".into(),
    })
}
