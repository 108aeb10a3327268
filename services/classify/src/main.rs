use image_api_classify::app;
use std::process::ExitCode;

fn main() -> ExitCode {
    kit::app::run(app::APP_ID, app::config, app::build)
}
