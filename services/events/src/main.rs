use std::process::ExitCode;

fn main() -> ExitCode {
    kit::rt::main(events::app::APP_ID, || async {
        let app = events::App::build(events::app::config_from_env()?).await?;
        tracing::info!(addr = %app.address(), "listening");
        app.run_until_stopped().await
    })
}
