mod app;

use std::process::ExitCode;

fn main() -> ExitCode {
    kit::rt::main(app::APP_ID, || async { app::build(app::config(&kit::config::Env)?).await?.run_until_stopped().await })
}
