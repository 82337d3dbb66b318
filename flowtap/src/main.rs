//! The flowtap binary.
#![forbid(unsafe_code)]

mod cli;
mod offline;
mod serve;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWTAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match offline::run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("flowtap: {e:#}");
            std::process::exit(1);
        }
    }
}
