//! The one request path every service shares, one file per concern:
//! - [`request`]: [`Req`], the request as a handler sees it;
//! - [`reply`]: building answers, and the JSON error answer;
//! - [`router`]: exact-path routes to handlers;
//! - [`pipeline`]: one request's steps, each a named function with a named
//!   result: route, rate-limit, read the body (a bounded number of readers,
//!   its memory reserved), admit (backpressure), run the handler with a
//!   deadline, then answer, count and log it;
//! - [`body`]: reading (or discarding) a body within the size, time and
//!   memory limits;
//! - [`server`]: binding and the accept loop with graceful shutdown;
//! - [`operational`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! [`Server::handle`] takes a `hyper::Request` and needs no socket, so routers
//! are testable in-process; [`Server::serve`] puts it on a listener.

mod body;
mod operational;
mod pipeline;
mod reply;
mod request;
mod router;
mod server;

#[cfg(test)]
mod tests;

pub use operational::{probe, Probe, ProbeError};
pub use reply::{error_reply, json, text, with_body, HandlerResult, Reply};
pub use request::{parse_json, Hold, Req};
pub use router::Router;
pub use server::{bind, BindError, Server};
