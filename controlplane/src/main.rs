use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = xdpgate::cli::Cli::parse();
    xdpgate::cli::init_tracing(cli.verbose);
    match xdpgate::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear sentence: every error type here puts its cause in its
            // own message, so the chain is not printed again.
            eprintln!("xdpgate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
