//! The flowtap binary.
#![deny(unsafe_code)]

mod allocator;
mod cli;
mod config;
mod fault;
mod hub_service;
#[cfg(feature = "live")]
mod live;
mod mcp_stdio;
mod offline;
mod progress;
mod serve;
mod setup;
mod table;
mod top;

use std::io::{Read, Write};
use std::time::Duration;

use cli::{Command, Docs, LogArgs, LogFormat};

/// Refuses a directive that is a bare word but no level: tracing reads
/// `warning` as a target, enabled at every level, and everything else off,
/// so a misspelt level silenced every log line, warnings included. A
/// target's level is given with `=` (`flowtap_xdp=debug`).
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    // An empty filter is errors only: warnings would go unseen.
    if filter.split(',').all(|d| d.trim().is_empty()) {
        return Err(
            "an empty filter (it would log errors only); give a level such as info".to_owned(),
        );
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = LEVELS.iter().any(|l| directive.eq_ignore_ascii_case(l))
            // tracing's numbers for them: 0 (off) to 5 (trace).
            || directive.parse::<u8>().is_ok_and(|n| n <= 5);
        if !directive.contains('=') && !level {
            return Err(format!(
                "{directive:?} is no level (trace, debug, info, warn, error, off); a target takes its level after '=', as in {directive}=debug"
            ));
        }
    }
    Ok(())
}

fn init_logging(run: &LogArgs) {
    // Checked as it was parsed (`cli::parse_log_filter`).
    let filter = tracing_subscriber::EnvFilter::try_new(&run.log_level)
        .expect("--log-level checked as it was parsed");
    // Colour only on a terminal: escape codes in log files help nobody.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match run.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder.json().init();
            LOGS_IN_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Set once logs are JSON lines (`--log-format json`): the error flowtap
/// stops on is then one of them, for the log pipeline that reads them.
static LOGS_IN_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `flowtap healthcheck`: a minimal HTTP GET of `path` from `host`, so the
/// container image needs no curl.
fn healthcheck((host, path): (String, String)) -> i32 {
    let url = format!("http://{host}{path}");
    let host = host.as_str();
    let result = (|| -> std::io::Result<String> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host)?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    })();
    match result {
        Ok(reply) if reply.starts_with("HTTP/1.1 200") => 0,
        Ok(reply) => {
            eprintln!(
                "flowtap healthcheck: {}",
                reply.lines().next().unwrap_or("")
            );
            1
        }
        Err(e) => {
            eprintln!("flowtap healthcheck: {url}: {e}");
            1
        }
    }
}

fn main() {
    serve::open_files_up_to_the_hard_limit();
    let (cli, settings) = config::load();
    match cli.command {
        Some(Command::Healthcheck { admin_listen, url }) => std::process::exit(
            match cli::healthcheck_target(&admin_listen, url.as_deref()) {
                Ok(target) => healthcheck(target),
                // 1, unhealthy: Docker's HEALTHCHECK reserves 2.
                Err(e) => {
                    eprintln!("flowtap healthcheck: --url: {e}");
                    1
                }
            },
        ),
        Some(Command::McpStdio {
            url,
            auth_token_file,
        }) => std::process::exit(mcp_stdio::run(&url, auth_token_file.as_deref())),
        Some(Command::Hub(args)) => {
            allocator::return_freed_memory_at_once();
            init_logging(&args.log);
            config::warn_of_unknown_variables();
            allocator::without_huge_pages();
            tracing::info!(version = cli::VERSION, %settings, options = ?args, "configuration");
            let code = hub_service::run(&args).unwrap_or_else(|e| failed("flowtap hub", &e));
            std::process::exit(code);
        }
        Some(Command::Top(args)) => {
            std::process::exit(top::run(&args).unwrap_or_else(|e| failed("flowtap top", &e)))
        }
        Some(Command::Docs { what }) => {
            let text = match what {
                Docs::Config => config::reference_markdown(),
                Docs::Metrics => api::metrics::reference_markdown(),
            };
            // As the other commands' output: a closed pipe (`| head`) is
            // the reader's choice, a full disk an error (print! panicked).
            use std::io::Write;
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return,
                Err(e) => {
                    eprintln!("flowtap docs: writing: {e}");
                    std::process::exit(1);
                }
            }
        }
        None => {}
    }
    let run = cli.run;
    init_logging(&run.log);
    config::warn_of_unknown_variables();
    allocator::without_huge_pages();
    // Services log their configuration where their logs are kept; a person
    // reading a file at a terminal gets the table and the report without a
    // line of every option first (--log-level debug shows it).
    let at_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if run.interface.is_empty() && run.serve.listen.is_none() && at_terminal {
        tracing::debug!(version = cli::VERSION, %settings, options = ?run, "configuration");
    } else {
        tracing::info!(version = cli::VERSION, %settings, options = ?run, "configuration");
    }
    if run.interface.is_empty() && !settings.live_only.is_empty() {
        tracing::warn!(
            options = settings.live_only.join(" "),
            "options of a live capture, given to one reading files: they do nothing here"
        );
    }
    let result = match run.interface.as_slice() {
        [] => offline::run(&run),
        #[cfg(feature = "live")]
        interfaces => live::run(&run, interfaces),
        #[cfg(not(feature = "live"))]
        _ => Err(anyhow::anyhow!(
            "this flowtap was built without live capture (the `live` feature); rebuild with default features"
        )),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => std::process::exit(failed("flowtap", &e)),
    }
}

/// Whether `e` is a write to a stdout whose reader went away.
pub(crate) fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code for error `e`, said on stderr: 1, or 0 without a word
/// when stdout was closed under us (`flowtap -r F | head`, `less` quit
/// early), which is how a reader says it has read enough.
fn failed(who: &str, e: &anyhow::Error) -> i32 {
    if stdout_closed(e) {
        return 0;
    }
    // As a JSON line where logs are, unless the log filter would drop it
    // (`--log-level off`): the reason flowtap stopped is never lost.
    if LOGS_IN_JSON.load(std::sync::atomic::Ordering::Relaxed)
        && tracing::enabled!(tracing::Level::ERROR)
    {
        tracing::error!(error = %error_text(e), "{who} stopped");
    } else {
        eprintln!("{who}: {}", error_text(e));
    }
    1
}

/// An error and its causes, as `{:#}` writes them (`a: b: c`), but without
/// a cause whose text the message before it already holds: many errors
/// (thiserror's with `{source}` in their message, io errors wrapped by
/// libraries) say their cause themselves, and it was printed twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt level is refused, not read as a target that silences
    /// every other line.
    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        for good in [
            "info",
            "WARN",
            "info,flowtap_xdp=debug",
            "hub=debug, api=trace",
            "off",
            "4",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in ["warning", "debg", "info,verbose", "6"] {
            let e = check_log_filter(bad).unwrap_err();
            assert!(e.contains("is no level"), "{bad}: {e}");
        }
    }

    #[derive(Debug)]
    struct SaysItsCause(std::io::Error);

    impl std::fmt::Display for SaysItsCause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "interface nosuch: {}", self.0)
        }
    }

    impl std::error::Error for SaysItsCause {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = std::io::Error::other("no network interface named nosuch");
        let e = anyhow::Error::new(SaysItsCause(io)).context("starting live capture");
        assert_eq!(
            format!("{e:#}"),
            "starting live capture: interface nosuch: no network interface named nosuch: \
             no network interface named nosuch"
        );
        assert_eq!(
            error_text(&e),
            "starting live capture: interface nosuch: no network interface named nosuch"
        );
    }
}
