use clap::Parser;
use std::process::ExitCode;

/// Exit status when a run finished but a check failed (clap uses 2 for
/// bad arguments).
const CHECK_FAILED: u8 = 3;

fn main() -> ExitCode {
    let args = loadgen::cli::Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: loadgen::cli::Args) -> Result<ExitCode, loadgen::Error> {
    let plan = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(loadgen::Error::Runtime)?;
    let report = runtime.block_on(loadgen::run::run(&plan))?;
    if plan.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.passed {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in report.failures() {
        eprintln!("loadgen: FAILED {failure}");
    }
    Ok(ExitCode::from(CHECK_FAILED))
}
