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

/// The closest of `known` to `name`, if one is close, as clap suggests for
/// a flag.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::jaro(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// `FLOWTAP_` variables that are no option's: a fault planted by tests
/// (debug builds), the build's commit, the tests' and benchmarks' corpus.
const OTHER_VARIABLES: &[&str] = &["FLOWTAP_FAULT", "FLOWTAP_GIT_COMMIT", "FLOWTAP_CORPUS"];

/// `FLOWTAP_*` variables of the environment that no option of any command
/// reads, each with the closest that one does: a misspelt one
/// (`FLOWTAP_RATE_WINDO`) was ignored without a word, as the config file's
/// unknown keys are not.
pub(crate) fn unknown_variables() -> Vec<(String, Option<String>)> {
    let command = Cli::command();
    let mut known: Vec<String> = OTHER_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    for c in std::iter::once(&command).chain(command.get_subcommands()) {
        known.extend(
            c.get_arguments()
                .filter_map(|a| a.get_env()?.to_str().map(str::to_owned)),
        );
    }
    // Compared without the prefix all share, which would make any name
    // close to every other.
    let suffixes = || known.iter().filter_map(|k| k.strip_prefix("FLOWTAP_"));
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.starts_with("FLOWTAP_") && !known.contains(name) && !is_service_link(name)
        })
        .map(|name| {
            let near =
                closest(&name["FLOWTAP_".len()..], suffixes()).map(|s| format!("FLOWTAP_{s}"));
            (name, near)
        })
        .collect()
}

/// Whether `name` is one of the variables the kubelet gives a pod for each
/// Service of its namespace (the hub's Service `flowtap-hub` gives
/// `FLOWTAP_HUB_SERVICE_HOST`, `FLOWTAP_HUB_PORT_8898_TCP_ADDR`, ...):
/// no one's misspelt option.
fn is_service_link(name: &str) -> bool {
    let docker_link = name.split("_PORT_").nth(1).is_some_and(|rest| {
        let (port, proto) = rest.split_once('_').unwrap_or((rest, ""));
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (proto.starts_with("TCP") || proto.starts_with("UDP") || proto.starts_with("SCTP"))
    });
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || name.ends_with("_PORT")
        || docker_link
}

/// Warns of each of [`unknown_variables`].
pub(crate) fn warn_of_unknown_variables() {
    for (variable, near) in unknown_variables() {
        match near {
            Some(near) => tracing::warn!(
                "environment variable {variable} is no option's, and ignored: did you mean {near}?"
            ),
            None => tracing::warn!("environment variable {variable} is no option's, and ignored"),
        }
    }
}

/// Parses the process's arguments and environment, and the config file if
/// one is named. On an error, prints it and exits (clap's convention).
pub(crate) fn load() -> (Cli, Settings) {
    load_from(std::env::args_os().collect()).unwrap_or_else(|e| e.exit())
}

/// Every option set, with where its value came from: `name=value (source)`,
/// the source being the command line, an environment variable by name, or
/// the config file. The configuration log line carries it, so an operator
/// can tell a DaemonSet's variable from a ConfigMap's file.
pub(crate) struct Settings {
    said: Vec<String>,
    /// The live capture's options set (`--busy-poll`), by name: reading
    /// files, they do nothing.
    pub(crate) live_only: Vec<String>,
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.said.join(", "))
    }
}

/// Options of which one is given: the source (`-r` or `-i`), the names
/// (a file or the watch). One named on the command line overrides the
/// others' environment variables and file keys, as a flag overrides its
/// own (a DaemonSet's `FLOWTAP_INTERFACE` must not make `-r` an error).
const ONE_OF: [[&str; 2]; 2] = [["read", "interface"], ["k8s_inventory", "k8s_watch"]];

/// Whether `args` name option `arg` (`--long`, `--long=V`, `-s`, `-sV`).
fn on_command_line(args: &[OsString], arg: &clap::Arg) -> bool {
    args.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
        let long = arg.get_long().is_some_and(|long| {
            a.strip_prefix("--")
                .is_some_and(|rest| rest == long || rest.starts_with(&format!("{long}=")))
        });
        let short = arg.get_short().is_some_and(|short| {
            !a.starts_with("--")
                && a.strip_prefix('-')
                    .is_some_and(|rest| rest.starts_with(short))
        });
        long || short
    })
}

/// `command` without the environment variables of the options that one
/// named on the command line overrides ([`ONE_OF`]).
fn one_of_overridden(command: clap::Command, args: &[OsString]) -> clap::Command {
    let strip = |mut command: clap::Command| {
        for set in ONE_OF {
            let given = |id: &str| {
                command
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .is_some_and(|a| on_command_line(args, a))
            };
            if let Some(named) = set.iter().find(|id| given(id)) {
                for other in set.iter().filter(|id| *id != named) {
                    if command.get_arguments().any(|a| a.get_id() == *other) {
                        command = command.mut_arg(*other, |a| a.env(None));
                    }
                }
            }
        }
        command
    };
    let mut command = strip(command);
    if command.find_subcommand("hub").is_some() {
        command = command.mut_subcommand("hub", strip);
    }
    command
}

/// Whether the file's value of `id` gives way to another option of its
/// [`ONE_OF`] set that the command line or environment set.
fn overridden_by_one_of(id: &str, matches: &ArgMatches) -> bool {
    ONE_OF
        .iter()
        .filter(|set| set.contains(&id))
        .flat_map(|set| set.iter().filter(|other| **other != id))
        .any(|other| {
            // A switch set false (FLOWTAP_K8S_WATCH=false) is not given.
            let off = matches!(matches.try_get_one::<bool>(other), Ok(Some(false)));
            !off && matches!(
                matches.value_source(other),
                Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
            )
        })
}

/// `command` without its own (the capture's) variables when `args` run a
/// subcommand, which takes none of them: an invalid capture variable in
/// the environment (`FLOWTAP_THREADS=x`) stopped `flowtap hub` with an
/// error about an option it does not have.
fn subcommand_alone(mut command: clap::Command, args: &[OsString]) -> clap::Command {
    let runs_subcommand = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|name| command.find_subcommand(name).is_some());
    if runs_subcommand {
        let ids: Vec<clap::Id> = command
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .map(|a| a.get_id().clone())
            .collect();
        for id in ids {
            command = command.mut_arg(id, |a| a.env(None));
        }
    }
    command
}

pub(crate) fn load_from(args: Vec<OsString>) -> Result<(Cli, Settings), clap::Error> {
    let command = subcommand_alone(Cli::command(), &args);
    let mut command = one_of_overridden(command, &args);
    // Built, so that a subcommand's errors name it in their usage line.
    command.build();
    // First pass: what the command line and environment say. The source
    // (-r or -i) may still come from the file, so it is not required yet.
    let relaxed = command.clone().mut_group("source", |g| g.required(false));
    let matches = relaxed
        .try_get_matches_from(&args)
        .map_err(|e| from_environment(e, &command, &args))?;
    // `flowtap hub` reads its own options from its file; the other
    // subcommands (healthcheck, top, docs, mcp-stdio) take none, and a
    // FLOWTAP_CONFIG meant for the capture they run beside (the image's
    // HEALTHCHECK runs `flowtap healthcheck` in the capture's environment)
    // is not theirs.
    let (options, matched, takes_file) = match matches.subcommand() {
        Some(("hub", sub)) => (
            command
                .find_subcommand("hub")
                .expect("the hub subcommand")
                .clone(),
            sub.clone(),
            true,
        ),
        other => (command.clone(), matches.clone(), other.is_none()),
    };
    let path = matched
        .try_get_one::<std::path::PathBuf>("config")
        .ok()
        .flatten()
        .filter(|_| takes_file)
        .cloned();
    let from_file = match &path {
        Some(path) => file_args(path, &options, &matched)?,
        None => Vec::new(),
    };
    let from_file_longs: Vec<String> = from_file
        .iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    let mut all = args;
    all.extend(from_file);
    let matches = command
        .clone()
        .try_get_matches_from(all)
        .map_err(|e| match &path {
            Some(p) if e.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                in_file(e, &options, p)
            }
            _ => e,
        })?;
    let cli = Cli::from_arg_matches(&matches)?;
    let effective = matches.subcommand_matches("hub").unwrap_or(&matches);
    // Both sources of names, refused as clap refuses a conflict (exit 2),
    // here because FLOWTAP_K8S_WATCH=false is no watch, which clap's own
    // conflict would not see.
    if matches!(effective.try_get_one::<bool>("k8s_watch"), Ok(Some(true)))
        && matches!(
            effective.try_get_one::<std::path::PathBuf>("k8s_inventory"),
            Ok(Some(_))
        )
    {
        return Err(options.clone().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--k8s-inventory and --k8s-watch: give one source of names, not both",
        ));
    }
    let file = path
        .as_ref()
        .map(|p| format!("config file {}", p.display()));
    let settings = options
        .get_arguments()
        .filter_map(|arg| {
            let id = arg.get_id().as_str();
            let source = match effective.value_source(id)? {
                ValueSource::DefaultValue => return None,
                ValueSource::EnvVariable => arg.get_env()?.to_string_lossy().into_owned(),
                _ => match (&file, arg.get_long()) {
                    (Some(file), Some(long)) if from_file_longs.iter().any(|l| l == long) => {
                        file.clone()
                    }
                    _ => "command line".to_owned(),
                },
            };
            let name = arg.get_long().unwrap_or(id);
            let values: Vec<String> = effective
                .get_raw(id)
                .map(|v| v.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Some(if values.is_empty() {
                format!("{name} ({source})")
            } else {
                format!("{name}={} ({source})", values.join(","))
            })
        })
        .collect();
    let live_only = options
        .get_arguments()
        .filter(|arg| arg.get_help_heading() == Some(crate::cli::LIVE))
        .filter(|arg| {
            effective
                .value_source(arg.get_id().as_str())
                .is_some_and(|s| s != ValueSource::DefaultValue)
        })
        .map(|arg| format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())))
        .collect();
    Ok((
        cli,
        Settings {
            said: settings,
            live_only,
        },
    ))
}

/// An error about the file at `path`, with `command`'s usage line.
fn invalid(command: &clap::Command, path: &Path, message: String) -> clap::Error {
    command.clone().error(
        clap::error::ErrorKind::InvalidValue,
        format!("config file {}: {message}", path.display()),
    )
}

fn in_file(e: clap::Error, command: &clap::Command, path: &Path) -> clap::Error {
    invalid(command, path, message_of(&e))
}

/// What an error says, without clap's `error: ` before it nor its usage
/// line and tip after it (the error made of it adds its own).
fn message_of(e: &clap::Error) -> String {
    let text = e.to_string();
    let text = text.trim_start_matches("error: ");
    let end = ["\n\nUsage:", "\n\nFor more information"]
        .iter()
        .filter_map(|tail| text.find(tail))
        .min()
        .unwrap_or(text.len());
    text[..end].trim_end().to_owned()
}

/// An invalid value that came from an option's environment variable
/// (`FLOWTAP_...`, a DaemonSet's or unit's setting) rather than from the
/// command line says so: clap names only the flag, which the command line
/// of a Pod never shows.
fn from_environment(e: clap::Error, command: &clap::Command, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(invalid_arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let Some(long) = invalid_arg
        .strip_prefix("--")
        .and_then(|rest| rest.split([' ', '=']).next())
    else {
        return e;
    };
    // A subcommand (`hub`) has options of its own, some named as the
    // appliance's are (with variables of their own).
    let command = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| command.find_subcommand(name))
        .unwrap_or(command);
    let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long)) else {
        return e;
    };
    let Some(variable) = arg.get_env() else {
        return e;
    };
    // The value clap refused is the variable's (or one of its values,
    // split as the option splits them: `;` for --decap-ports): a flag
    // given without one (`-r` alone) is the command line's doing.
    let refused = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.as_str(),
        _ => return e,
    };
    let delimiter = arg.get_value_delimiter().unwrap_or(',');
    let from_variable = std::env::var(variable).is_ok_and(|set| {
        // clap refuses a piece as split (` bad` after `a, bad`).
        set == refused
            || set
                .split(delimiter)
                .any(|piece| piece == refused || piece.trim() == refused.trim())
    });
    if on_command_line(args, arg) || !from_variable {
        return e;
    }
    command.clone().error(
        e.kind(),
        format!(
            "environment variable {}: {}",
            variable.to_string_lossy(),
            message_of(&e)
        ),
    )
}

/// Options a config file cannot set: the file itself, a one-shot dump,
/// and what prints and exits.
const NOT_IN_A_FILE: [&str; 4] = ["config", "dump", "help", "version"];

/// The file's settings as arguments, for the options the command line and
/// environment left unset.
fn file_args(
    path: &Path,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, clap::Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(command, path, format!("cannot read: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(command, path, e.to_string().trim().to_owned()))?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(long.as_str())
                    && !a.is_hide_set()
                    && !NOT_IN_A_FILE.contains(&long.as_str())
            })
            .ok_or_else(|| {
                let known: Vec<&str> = command
                    .get_arguments()
                    .filter(|a| !a.is_hide_set())
                    .filter_map(|a| a.get_long())
                    .filter(|l| !NOT_IN_A_FILE.contains(l))
                    .collect();
                let closest = closest(&long, known.iter().copied())
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                invalid(
                    command,
                    path,
                    format!(
                        "unknown option `{key}`; {closest}known options: {}",
                        known.join(", ")
                    ),
                )
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
        ) || overridden_by_one_of(id, matches)
        {
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
                    command,
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
                    command,
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
    // options above too: the same option, variable and meaning; one of its
    // own may share a name with a capture's, as --max-flows does, or a
    // name and variable but not the meaning, as --snapshot-interval does).
    fn same(a: &clap::Arg) -> (Option<&str>, Option<&std::ffi::OsStr>, Option<String>) {
        (
            a.get_long(),
            a.get_env(),
            a.get_help().map(ToString::to_string),
        )
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
