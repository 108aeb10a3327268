//! classify's inference backend is chosen by `CLASSIFY_BACKEND` at start-up:
//! a value the build cannot serve stops the service before it listens, with
//! a message naming the variable, on either runtime. The services' builds
//! have no `wasmedge-tflite` feature; the plugin-only classify module `make
//! wasm` also builds is run under the real WasmEdge, which has no plugin
//! here, to see it refuse to start and say why. Natively the default is
//! litert, and the wasm32 build, which has no litert, refuses it.

use stack::{Runtime, Service, Stack, StackOptions};
use std::time::Duration;

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
        unknown.contains(r#"invalid configuration CLASSIFY_BACKEND="onnx": unknown backend: expected one of litert, tract, wasmedge-tflite"#),
        "{unknown}"
    );
    assert!(absent.contains("image-api-classify exited"), "{absent}");
    assert!(
        absent.contains(r#"invalid configuration CLASSIFY_BACKEND="wasmedge-tflite": this build of image-api-classify has no wasmedge-tflite backend"#),
        "{absent}"
    );
}

/// LiteRT natively by default; named under WasmEdge, a start-up error.
#[tokio::test]
async fn litert_is_native_only() {
    match Runtime::from_env().unwrap_or(Runtime::Native) {
        Runtime::WasmEdge => {
            let e = refused("litert").await;
            assert!(
                e.contains(r#"invalid configuration CLASSIFY_BACKEND="litert": the litert backend runs libLiteRt.so"#)
                    && e.contains("wasm32-wasip1"),
                "{e}"
            );
        }
        _ => {
            let stack = crate::support::start_with(
                StackOptions::test(&[Service::Classify]).with_env("CLASSIFY_BACKEND", "litert"),
            )
            .await;
            let url = stack.service(Service::Classify).url("/classify");
            let (_, hot_dog) = crate::support::shared_images().into_iter().next().expect("hot_dog.jpg");
            let r = stack
                .client
                .request(stack::Method::POST, &url, &[("accept", "application/json")], hot_dog.into())
                .await
                .expect("classify");
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
            let v = r.json();
            // Python LiteRT 2.1.4 fed by Pillow answers hotdog 227/255; classify
            // 235, the gap being the JPEG decoder (services/classify's
            // litert_tests compare with the reference itself, tolerance 10).
            let score = v["score"].as_u64().expect("score");
            assert!(v["label"] == "hotdog" && score.abs_diff(227) <= 10, "{v}");
        }
    }
}

/// The plugin-only classify module on Debian's WasmEdge (no TFLite plugin):
/// it instantiates (WasmEdge stands in a placeholder module for the plugin),
/// then fails its first plugin call at start-up and exits with a message
/// naming the plugin, before it listens: not a crash on the first request.
#[tokio::test]
async fn the_tflite_plugin_build_stops_at_start_up_without_the_plugin() {
    if stack::Runtime::from_env().ok() != Some(Runtime::WasmEdge) {
        println!("a WasmEdge test: STACK_RUNTIME=wasmedge runs it (make test does)");
        return;
    }
    let env = [("APP_PORT".to_owned(), stack::free_port().to_string())];
    let mut cmd = stack::service::wasmedge_tflite_classify_command(&env);
    let out = tokio::time::timeout(Duration::from_secs(120), tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("it stopped within 2 minutes")
        .expect("join")
        .expect("wasmedge ran");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "it exited with an error: {log}");
    assert!(log.contains("wasmedge-tflite"), "the error names the backend: {log}");
    assert!(log.to_lowercase().contains("plugin"), "the error names the plugin: {log}");
    assert!(!log.contains("panicked"), "a clean stop, not a panic: {log}");
    assert!(!log.contains("\"listening\""), "it stopped before it listened: {log}");
    println!("{}", log.lines().filter(|l| l.contains("plugin")).collect::<Vec<_>>().join("\n"));
}
