//! Where each option's value comes from: a command-line flag, else its
//! environment variable (`FLOWTAP_...`), else the `--config` TOML file (keys
//! are the long option names, `-` or `_` alike), else its default.
//!
//! The command line and environment are parsed first; options neither set
//! are then taken from the file and everything is parsed again, so a value
//! from the file goes through exactly the validation a flag does, and an
//! error names the option, the allowed values and the file.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// Parses the process's arguments and environment, and the config file if
/// one is named. On an error, prints it and exits (clap's convention).
pub(crate) fn load() -> Cli {
    load_from(std::env::args_os().collect()).unwrap_or_else(|e| e.exit())
}

pub(crate) fn load_from(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let command = Cli::command();
    // First pass: what the command line and environment say. The source
    // (-r or -i) may still come from the file, so it is not required yet.
    let relaxed = command.clone().mut_group("source", |g| g.required(false));
    let matches = relaxed.try_get_matches_from(&args)?;
    // `flowtap hub` reads its own options from its file.
    let (options, matched) = match matches.subcommand() {
        Some(("hub", sub)) => (
            command
                .find_subcommand("hub")
                .expect("the hub subcommand")
                .clone(),
            sub.clone(),
        ),
        _ => (command.clone(), matches.clone()),
    };
    let path = matched
        .try_get_one::<std::path::PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    let from_file = match &path {
        Some(path) => file_args(path, &options, &matched)?,
        None => Vec::new(),
    };
    let mut all = args;
    all.extend(from_file);
    let matches = command.try_get_matches_from(all).map_err(|e| match &path {
        Some(p) if e.kind() != clap::error::ErrorKind::MissingRequiredArgument => in_file(e, p),
        _ => e,
    })?;
    Cli::from_arg_matches(&matches)
}

fn invalid(path: &Path, message: String) -> clap::Error {
    Cli::command().error(
        clap::error::ErrorKind::InvalidValue,
        format!("config file {}: {message}", path.display()),
    )
}

fn in_file(e: clap::Error, path: &Path) -> clap::Error {
    let text = e.to_string();
    let text = text.trim_start_matches("error: ").trim_end();
    invalid(path, text.to_owned())
}

/// The file's settings as arguments, for the options the command line and
/// environment left unset.
fn file_args(
    path: &Path,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, clap::Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(path, format!("cannot read: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(path, e.to_string().trim().to_owned()))?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(long.as_str())
                    && !a.is_hide_set()
                    && long != "config"
                    && long != "dump"
            })
            .ok_or_else(|| {
                let known: Vec<&str> = command
                    .get_arguments()
                    .filter(|a| !a.is_hide_set())
                    .filter_map(|a| a.get_long())
                    .filter(|l| !["config", "dump", "help", "version"].contains(l))
                    .collect();
                invalid(
                    path,
                    format!(
                        "unknown option `{key}`; known options: {}",
                        known.join(", ")
                    ),
                )
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{long}");
        let takes_value = arg.get_action().takes_values();
        let scalar = |v: &toml::Value| -> Result<String, clap::Error> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(invalid(
                    path,
                    format!(
                        "option `{key}` takes a {}, not {}",
                        if takes_value { "value" } else { "boolean" },
                        other.type_str()
                    ),
                )),
            }
        };
        match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    args.push(flag.into());
                }
            }
            _ if !takes_value => {
                return Err(invalid(
                    path,
                    format!("option `{key}` is a switch: give true or false"),
                ));
            }
            toml::Value::Array(items) => {
                for item in items {
                    args.push(format!("{flag}={}", scalar(item)?).into());
                }
            }
            other => args.push(format!("{flag}={}", scalar(other)?).into()),
        }
    }
    Ok(args)
}

/// The configuration reference: a Markdown table generated from the option
/// definitions.
pub(crate) fn reference_markdown() -> String {
    let command = Cli::command();
    let mut out = options_table(command.get_arguments());
    // The hub's own options (it takes the server, Kubernetes and logging
    // options above too: the same option and variable; one of its own may
    // share a name with a capture's, as --max-flows does, but not its
    // variable).
    fn same(a: &clap::Arg) -> (Option<&str>, Option<&std::ffi::OsStr>) {
        (a.get_long(), a.get_env())
    }
    let shared: Vec<_> = command.get_arguments().map(same).collect();
    let hub = command.find_subcommand("hub").expect("the hub subcommand");
    out.push_str(
        "\n`flowtap hub` takes the API server, Kubernetes and logging options above, and:\n\n",
    );
    out.push_str(&options_table(
        hub.get_arguments().filter(|a| !shared.contains(&same(a))),
    ));
    out
}

fn options_table<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> String {
    let mut out = String::from(
        "| option | environment | config key | default | description |\n|---|---|---|---|---|\n",
    );
    for arg in args.filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let option = match arg.get_short() {
            Some(s) => format!("`-{s}`, `--{long}`"),
            None => format!("`--{long}`"),
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let key = if long == "config" || long == "dump" {
            String::new()
        } else {
            format!("`{long}`")
        };
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let mut help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        if !values.is_empty() {
            help.push_str(&format!(" Values: {}.", values.join(", ")));
        }
        out.push_str(&format!(
            "| {option} | {env} | {key} | {} | {help} |\n",
            default.join(", ")
        ));
    }
    out
}
