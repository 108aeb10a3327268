//! kit's image intake as every image service runs it: sniff, declared size
//! against the limits, the JPEG end-of-image check, then the limited decode.
#![no_main]

use kit::imaging::{self, ImageError};
use kit::ApiError;
use libfuzzer_sys::fuzz_target;
use services_fuzz::{assert_client_error, assert_within_limits, LIMITS};

fuzz_target!(|bytes: &[u8]| {
    match imaging::decode(bytes, &LIMITS) {
        Err(err) => {
            if bytes.is_empty() {
                assert_eq!(err, ImageError::Empty);
            }
            assert_client_error(&ApiError::from(err));
        }
        Ok(image) => {
            assert_within_limits(image.width(), image.height());
            // The limits were checked on the header: the pixels must be what it declared.
            let (_, width, height) = imaging::intake(bytes, &LIMITS).expect("decoded, so its intake passed");
            assert_eq!((image.width(), image.height()), (width, height), "decoded size differs from the declared one");
            let expected = u64::from(width) * u64::from(height) * u64::from(image.color().bytes_per_pixel());
            assert_eq!(image.as_bytes().len() as u64, expected);
        }
    }
});
