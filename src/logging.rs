//! Logs: `tracing`, with spans for commits and restores, as text or JSON lines.
//!
//! faustus logs through the `log` facade and `tracing`; [`init`] installs a `tracing`
//! subscriber that prints both (the `log` records become `tracing` events, inside the span
//! that is current where they are logged). `RUST_LOG` filters, as with `env_logger`
//! (`RUST_LOG=faustus=debug,rdkafka=warn`). Nothing is logged per record.
//!
//! Spans: `commit{epoch, records}` around each commit of the committer, `restore{changelog,
//! worker}` around a worker's restore of a changelog. In JSON, each line carries the current
//! span and its parents' fields, so a warning logged while committing says which epoch it was.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`, `spans`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: use `text` or `json`"
            )),
        }
    }
}

/// Installs the process's log subscriber: `format` lines on standard error, filtered by
/// `RUST_LOG`, or by `default_filter` (`"info"`, `"warn"`, ...) without it. Returns an error
/// if a logger or subscriber is already installed (the first one stays).
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| format!("a logger is already installed: {e}"))
}

/// Parses this process's command line into a program's flags `A`, and installs the logger
/// first ([`init`], with `default_filter`) in the format its `--log-format` flag asks for (the
/// flag of [`crate::AppArgs`], wherever `A` flattens it, subcommands included; text without
/// it). A bad flag prints what is wrong and exits with status 2, as `A::parse()` does.
///
/// ```no_run
/// #[derive(clap::Parser)]
/// struct Args {
///     #[command(flatten)]
///     app: faustus::AppArgs,
/// }
/// let args: Args = faustus::logging::parse_args("info");
/// ```
pub fn parse_args<A: clap::Parser>(default_filter: &str) -> A {
    let matches = <A as clap::CommandFactory>::command().get_matches();
    let _ = init(log_format(&matches).unwrap_or_default(), default_filter);
    <A as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The `--log-format` given in `matches` or in its subcommand's.
fn log_format(matches: &clap::ArgMatches) -> Option<LogFormat> {
    match matches.try_get_one::<LogFormat>("log_format") {
        Ok(Some(format)) => Some(*format),
        _ => matches.subcommand().and_then(|(_, sub)| log_format(sub)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_by_name() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("`yaml`"));
    }
}
