//! Small helpers the test modules share.

use stack::{Reply, Service, Stack, StackOptions};
use std::path::PathBuf;

pub async fn start(services: &[Service]) -> Stack {
    start_with(StackOptions::test(services)).await
}

pub async fn start_with(opts: StackOptions) -> Stack {
    match Stack::start(opts).await {
        Ok(stack) => stack,
        Err(e) => panic!("the stack did not start: {e}"),
    }
}

pub fn image(name: &str) -> Vec<u8> {
    let path = stack::paths::shared_dir().join("images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn shared_images() -> Vec<(&'static str, Vec<u8>)> {
    ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"].into_iter().map(|n| (n, image(n))).collect()
}

pub fn repo_path(rel: &str) -> PathBuf {
    stack::paths::repo_root().join(rel)
}

/// Asserts a JSON error answer: status, `error.code`, a non-empty message.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "status; body: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"), "content type; body: {}", reply.text());
    let v = reply.json();
    assert_eq!(v["error"]["code"], code, "error code; body: {}", reply.text());
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message; body: {}", reply.text());
}

/// The events stored, newest first, read straight through the app.
pub async fn events(stack: &Stack) -> Vec<serde_json::Value> {
    let r = stack.client.get(&stack.service(Service::Events).url("/events?limit=1000")).await.expect("GET /events");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json().as_array().cloned().unwrap_or_default()
}
