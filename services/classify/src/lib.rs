//! image-api-classify domain.
