//! The flowtap binary.
#![forbid(unsafe_code)]

mod cli;
#[cfg(feature = "live")]
mod live;
mod offline;
mod serve;
mod setup;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWTAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: escape codes in log files help nobody.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match &cli.interface {
        #[cfg(feature = "live")]
        Some(iface) => live::run(&cli, iface),
        #[cfg(not(feature = "live"))]
        Some(_) => Err(anyhow::anyhow!(
            "this flowtap was built without live capture (the `live` feature); rebuild with default features"
        )),
        None => offline::run(&cli),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("flowtap: {e:#}");
            std::process::exit(1);
        }
    }
}
