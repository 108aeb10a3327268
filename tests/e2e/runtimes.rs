//! The same source, natively and as WebAssembly under WasmEdge, gives the same
//! answers: grayscale byte for byte, classify (on tract, the backend both
//! builds have) the same label and score.
//!
//! It needs both runtimes whatever `STACK_RUNTIME` says, and fails (never
//! skips) when WasmEdge is not set up, saying to run `make wasmedge`.

use crate::support::{shared_images, start_with};
use stack::{Method, Reply, Runtime, Service, Stack, StackOptions};

async fn post(stack: &Stack, service: Service, route: &str, accept: &str, body: &[u8]) -> Reply {
    let url = stack.service(service).url(route);
    let r = stack.client.request(Method::POST, &url, &[("accept", accept)], body.to_vec().into()).await;
    let r = r.unwrap_or_else(|e| panic!("{} {route}: {e}", stack.runtime.name()));
    assert_eq!(r.status.as_u16(), 200, "{} {route}: {}", stack.runtime.name(), r.text());
    r
}

#[tokio::test]
async fn wasmedge_answers_byte_for_byte_as_native() {
    if let Err(e) = Runtime::WasmEdge.check(&Service::ALL) {
        panic!("this test compares native with WasmEdge and cannot run: {e}");
    }
    // Natively classify defaults to LiteRT, which has no wasm32 build: tract
    // on both sides, so the runtimes, not the engines, are compared.
    let opts = |runtime| StackOptions::test(&Service::ALL).with_runtime(runtime).with_env("CLASSIFY_BACKEND", "tract");
    let (native, wasm) = tokio::join!(start_with(opts(Runtime::Native)), start_with(opts(Runtime::WasmEdge)));
    for stack in [&native, &wasm] {
        let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
        assert_eq!(r.status.as_u16(), 200, "{}: {}", stack.runtime.name(), r.text());
    }

    for (name, photo) in shared_images() {
        // The documented answer (base64 PNG), so the encoding is compared too.
        let (a, b) = (
            post(&native, Service::Grayscale, "/grayscale", "*/*", &photo).await,
            post(&wasm, Service::Grayscale, "/grayscale", "*/*", &photo).await,
        );
        let first_difference = a.body.iter().zip(b.body.iter()).position(|(x, y)| x != y);
        assert!(
            a.body == b.body,
            "{name}: grayscale differs: native {} bytes, wasmedge {} bytes, first difference at {first_difference:?}",
            a.body.len(),
            b.body.len()
        );
        assert_eq!(a.header("content-type"), b.header("content-type"), "{name}");

        let (a, b) = (
            post(&native, Service::Classify, "/classify", "application/json", &photo).await.json(),
            post(&wasm, Service::Classify, "/classify", "application/json", &photo).await.json(),
        );
        assert!(a["label"].is_string() && a["score"].is_u64(), "{name}: {a}");
        assert_eq!(
            (&a["label"], &a["score"]),
            (&b["label"], &b["score"]),
            "{name}: classify differs\nnative:   {a}\nwasmedge: {b}"
        );
    }
}
