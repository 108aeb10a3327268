//! The classify service's preprocessing of a request body (what
//! `Classifier::preprocess` runs, at MobileNet's 224x224): limited decode,
//! RGB8, Pillow's bilinear resize. Inference needs the model, not fuzzed.
#![no_main]

use image_api_classify::preprocess::decode_to_input;
use kit::ApiError;
use libfuzzer_sys::fuzz_target;
use services_fuzz::{assert_client_error, LIMITS};

const INPUT_SIDE: u32 = 224;

fuzz_target!(|bytes: &[u8]| {
    match decode_to_input(bytes, &LIMITS, INPUT_SIDE, INPUT_SIDE) {
        // Only image errors reach here; model errors are load-time.
        Err(err) => assert_client_error(&ApiError::from(err)),
        Ok(input) => assert_eq!(input.len(), (INPUT_SIDE * INPUT_SIDE * 3) as usize),
    }
});
