//! The one shared library every service is built on.
//!
//! A service crate holds its domain; everything about being a service in this
//! stack lives here, so a reader who knows one service knows all three.

pub mod error;
#[cfg(feature = "imaging")]
pub mod imaging;

pub use error::ApiError;
