//! What the fuzz targets share: the limits they run the services with, and
//! the invariant every refusal must keep.

use kit::imaging::ImageLimits;
use kit::ApiError;

/// Modest limits, so a large declared image is refused in the header and
/// iterations stay fast; the services' defaults are far larger.
pub const LIMITS: ImageLimits = ImageLimits { max_width: 2048, max_height: 2048, max_pixels: 1_000_000 };

/// A refused upload is the client's fault: a 4xx with a code to branch on
/// and a message. A 5xx here would mean our code failed on bad input.
pub fn assert_client_error(err: &ApiError) {
    assert!(err.status.is_client_error(), "not a 4xx: {err:?}");
    assert!(!err.code.is_empty(), "no error code: {err:?}");
    assert!(!err.message.is_empty(), "no message: {err:?}");
}

/// `width` x `height` within [`LIMITS`], and not empty.
pub fn assert_within_limits(width: u32, height: u32) {
    assert!(width > 0 && height > 0, "empty image accepted: {width}x{height}");
    assert!(width <= LIMITS.max_width && height <= LIMITS.max_height, "{width}x{height} over the limits");
    assert!(u64::from(width) * u64::from(height) <= LIMITS.max_pixels, "{width}x{height} over the pixel limit");
}
