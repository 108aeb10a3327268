//! image-api-grayscale domain.
