use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = xdpgate::cli::Cli::parse();
    xdpgate::cli::init_tracing(cli.verbose);
    match xdpgate::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear sentence per cause, no backtrace.
            eprintln!("xdpgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
