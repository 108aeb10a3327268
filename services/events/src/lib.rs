//! events-service: records what the image services did, in MySQL/MariaDB.
//!
//! - [`store`]: the events table behind a pool, failures classified;
//! - [`migrate`]: versioned migrations, shared by `GET /init` and the CLI;
//! - [`app`]: configuration, start-up (DB URL from the Dapr secret store)
//!   and the routes.

pub mod app;
pub mod migrate;
pub mod store;

pub use app::{build, Config};
