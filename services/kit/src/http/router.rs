//! Exact-path routes: the services have few, fixed paths.

use super::reply::HandlerResult;
use super::request::Req;
use crate::BoxFuture;
use http::Method;
use std::future::Future;
use std::sync::Arc;

type Handler = Arc<dyn Fn(Req) -> BoxFuture<HandlerResult> + Send + Sync>;

pub(super) struct Route {
    pub(super) method: Method,
    pub(super) path: &'static str,
    pub(super) handler: Handler,
}

/// What a method and path match.
pub(super) enum Found<'a> {
    Route(&'a Route),
    /// The path exists with other methods: these, for `Allow`.
    WrongMethod(String),
    Nothing,
}

#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route<F, Fut>(mut self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.routes.push(Route { method, path, handler });
        self
    }

    /// Every route template, and "unmatched" (what the rest counts under).
    pub(super) fn templates(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.iter().map(|r| r.path).chain(std::iter::once("unmatched"))
    }

    /// The route template `path` matches, or "unmatched".
    pub(super) fn template(&self, method: &Method, path: &str) -> &'static str {
        match self.find(method, path) {
            Found::Route(route) => route.path,
            _ => "unmatched",
        }
    }

    /// A `HEAD` is served by the `GET` route of its path.
    pub(super) fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut allowed = Vec::new();
        for route in self.routes.iter().filter(|r| r.path == path) {
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Found::Route(route);
            }
            allowed.push(route.method.as_str());
        }
        if allowed.is_empty() {
            Found::Nothing
        } else {
            Found::WrongMethod(allowed.join(", "))
        }
    }
}
