//! Each service's app built in this process (`app::config` + `app::build`,
//! what its `main` runs) beside a real daprd the harness starts: the app
//! listens where the harness said, is reached through its sidecar, and
//! calls back out through it.

use crate::support::{events, image, start};
use stack::{RunningService, Service, Stack};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Runs `build(config(env))` for `instance` until the test ends; the address
/// the app is bound to.
async fn run_in_process<C, B, Fut>(
    instance: &RunningService,
    config: fn(&dyn kit::config::Source) -> Result<C, kit::StartError>,
    build: B,
) -> SocketAddr
where
    B: FnOnce(C) -> Fut + Send + 'static,
    C: Send + 'static,
    Fut: std::future::Future<Output = Result<kit::app::App, kit::StartError>> + Send + 'static,
{
    let env: HashMap<String, String> = instance.env().iter().cloned().collect();
    let config = config(&env).unwrap_or_else(|e| panic!("{}: config: {e}", instance.service.app_id()));
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let name = instance.service.app_id();
    tokio::spawn(async move {
        // build binds first, then waits for the sidecar, which waits for the
        // app's port: so it runs beside the test, not before it.
        match build(config).await {
            Ok(app) => {
                let _ = bound_tx.send(Ok(app.address()));
                let _ = app.run_until(std::future::pending()).await;
            }
            Err(e) => {
                let _ = bound_tx.send(Err(format!("{name}: build: {e}")));
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(90), bound_rx).await {
        Ok(Ok(Ok(addr))) => addr,
        Ok(Ok(Err(e))) => panic!("{e}"),
        other => panic!("{name}: the app was not built: {other:?}"),
    }
}

/// Waits for the in-process instance of `service` (the last one added) and
/// its sidecar; the URL of `path` through that sidecar.
async fn ready(stack: &mut Stack, service: Service, path: &str) -> String {
    let instance = stack.services.iter_mut().rev().find(|s| s.service == service).expect("the in-process instance");
    instance.wait_ready(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}"));
    instance.invoke_url(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_runs_in_process_beside_a_real_daprd() {
    let mut stack = start(&[Service::Events]).await;
    let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    // events: its database URL read through the in-process app's own sidecar.
    let instance = stack.add_in_process(Service::Events).expect("events sidecar");
    let port = instance.app_port;
    let addr = run_in_process(instance, ::events::app::config, ::events::app::build).await;
    assert_eq!(addr.port(), port, "the app listens where the harness told its sidecar");
    let url = ready(&mut stack, Service::Events, "/events/count").await;
    let r = stack.client.get(&url).await.expect("count");
    assert_eq!((r.status.as_u16(), r.json()["count"].as_u64()), (200, Some(0)), "{}", r.text());

    // grayscale and classify: a photo through their sidecar, each recorded
    // through Dapr service invocation of events-service.
    let photo = image("hot_dog.jpg");
    let grayscale = stack.add_in_process(Service::Grayscale).expect("grayscale sidecar");
    run_in_process(grayscale, image_api_grayscale::app::config, image_api_grayscale::app::build).await;
    let url = ready(&mut stack, Service::Grayscale, "/grayscale").await;
    let r = stack.client.post(&url, photo.clone()).await.expect("grayscale");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(r.text().starts_with("iVBORw0KGgo"), "a base64 PNG");

    let classify = stack.add_in_process(Service::Classify).expect("classify sidecar");
    run_in_process(classify, image_api_classify::app::config, image_api_classify::app::build).await;
    let url = ready(&mut stack, Service::Classify, "/classify").await;
    let r = stack.client.post(&url, photo.clone()).await.expect("classify");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(r.text().starts_with("hotdog is detected with "), "{}", r.text());

    let ops: Vec<String> =
        events(&stack).await.iter().filter_map(|e| e["op_type"].as_str().map(str::to_owned)).collect();
    assert_eq!(ops, ["classify", "grayscale"], "both recorded, newest first");
}
