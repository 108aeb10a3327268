use std::process::ExitCode;

fn main() -> ExitCode {
    kit::rt::main(events::app::APP_ID, || async {
        events::build(events::app::config_from_env()?).await?.run_until_stopped().await
    })
}
