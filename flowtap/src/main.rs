//! The flowtap binary.
#![forbid(unsafe_code)]

mod cli;
mod offline;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    match offline::run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("flowtap: {e:#}");
            std::process::exit(1);
        }
    }
}
