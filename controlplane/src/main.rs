use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = xdpgate::cli::Cli::parse();
    let file_level = xdpgate::cli::config_log_level(&cli);
    xdpgate::cli::init_tracing(cli.verbose, file_level.as_deref());
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
