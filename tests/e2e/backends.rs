//! classify's inference backend is chosen by `CLASSIFY_BACKEND` at start-up:
//! a value the build cannot serve stops the service before it listens, with
//! a message naming the variable, on either runtime. (The builds here have no
//! `wasmedge-tflite` feature; that backend's own start-up error without the
//! WasmEdge plugin is covered by the classify crate's unit tests.)

use stack::{Service, Stack, StackOptions};

async fn refused(backend: &str) -> String {
    let opts = StackOptions::test(&[Service::Classify]).with_env("CLASSIFY_BACKEND", backend);
    match Stack::start(opts).await {
        Ok(stack) => panic!("{}: classify started with CLASSIFY_BACKEND={backend}", stack.runtime.name()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn classify_refuses_a_backend_it_does_not_have_at_start_up() {
    let (unknown, absent) = tokio::join!(refused("onnx"), refused("wasmedge-tflite"));
    assert!(unknown.contains("image-api-classify exited"), "{unknown}");
    assert!(
        unknown.contains(r#"invalid configuration CLASSIFY_BACKEND="onnx": unknown backend: expected tract or wasmedge-tflite"#),
        "{unknown}"
    );
    assert!(absent.contains("image-api-classify exited"), "{absent}");
    assert!(
        absent.contains(r#"invalid configuration CLASSIFY_BACKEND="wasmedge-tflite": this build of image-api-classify has no wasmedge-tflite backend"#),
        "{absent}"
    );
}
