//! Where the flags come from: the command line, `RAFTCACHE_*` environment
//! variables and a TOML file (`--config FILE`), in that order of precedence.
//!
//! figment reads and merges the file and the environment; each key it yields
//! becomes the flag of the same name, placed before the command line's own
//! flags unless the command line already gives it. The result is parsed by
//! clap like any command line, so a value is checked by the same parser
//! whatever its source, and every source has the same names: the flag
//! `--data-dir`, the key `data-dir` (or `data_dir`), the variable
//! `RAFTCACHE_DATA_DIR`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::Figment;

use crate::config::Args;

/// Flags that are not settings: never read from a file or the environment.
/// The unsafe test switches are among them: only a command line that says so
/// turns one on.
const NOT_SETTINGS: &[&str] =
    &["config", "print-config", "list-commands", "unsafe-test-switch", "help", "version"];

/// Settings whose values `--print-config` does not show.
const SECRETS: &[&str] = &["requirepass", "admin-token", "peer-secret"];

/// Why the flags could not be read.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's own outcome: an error in the command line, or --help/--version.
    Clap(clap::Error),
    /// A problem in the file or the environment: one line naming the key.
    Invalid(String),
}

/// Every setting's long flag name.
fn setting_names() -> Vec<String> {
    Args::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_SETTINGS.contains(l))
        .map(String::from)
        .collect()
}

fn flag_name(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', "-")
}

/// A TOML or environment value as a flag's value.
fn flag_value(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(_, s) => Ok(s.clone()),
        Value::Char(_, c) => Ok(c.to_string()),
        Value::Bool(_, b) => Ok(b.to_string()),
        Value::Num(_, n) => {
            if let Some(u) = n.to_u128() {
                Ok(u.to_string())
            } else if let Some(i) = n.to_i128() {
                Ok(i.to_string())
            } else {
                Err(format!("{key}: a whole number is expected"))
            }
        }
        Value::Array(_, items) => {
            let parts: Result<Vec<String>, String> =
                items.iter().map(|v| flag_value(key, v)).collect();
            Ok(parts?.join(","))
        }
        Value::Dict(..) | Value::Empty(..) => Err(format!("{key}: not a value (a table?)")),
    }
}

/// A multi-line parser message (a TOML error with its excerpt) as one line.
fn one_line(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|') && !l.chars().all(|c| c == '^' || c == ' '))
        .collect();
    kept.join(": ")
}

/// The settings a source gives, as flag name → (value, where from).
fn read_sources(
    file: Option<&Path>,
    names: &[String],
) -> Result<BTreeMap<String, (String, String)>, String> {
    let mut out = BTreeMap::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(format!("--config {}: no such file", path.display()));
        }
        let dict: BTreeMap<String, Value> = Figment::from(Toml::file_exact(path))
            .extract()
            .map_err(|e| format!("--config {}: {}", path.display(), one_line(&e.to_string())))?;
        for (key, value) in dict {
            let name = flag_name(&key);
            if !names.contains(&name) {
                return Err(format!("--config {}: unknown key '{key}'", path.display()));
            }
            let value = flag_value(&key, &value)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            out.insert(name, (value, format!("key '{key}' in {}", path.display())));
        }
    }
    // Only variables that name a setting: RAFTCACHE_BIN and the like belong
    // to scripts, not to the server.
    let known = names.to_vec();
    let env = Env::prefixed("RAFTCACHE_").filter(move |k| known.contains(&flag_name(k.as_str())));
    let dict: BTreeMap<String, Value> =
        Figment::from(env).extract().map_err(|e| format!("environment: {e}"))?;
    for (key, value) in dict {
        let name = flag_name(&key);
        let var = format!("RAFTCACHE_{}", name.replace('-', "_").to_ascii_uppercase());
        let value = flag_value(&var, &value)?;
        out.insert(name, (value, format!("environment variable {var}")));
    }
    Ok(out)
}

/// Parses the command line `argv` (program name first) with the file and the
/// environment behind it.
pub fn parse_from(argv: Vec<OsString>) -> Result<Args, ConfigError> {
    Args::from_arg_matches(&matches_from(argv)?).map_err(ConfigError::Clap)
}

/// clap's matches of the command line with the file's and the environment's
/// settings before it.
fn matches_from(argv: Vec<OsString>) -> Result<ArgMatches, ConfigError> {
    let command = Args::command();
    let first = command.clone().try_get_matches_from(&argv).map_err(ConfigError::Clap)?;
    let names = setting_names();
    let file = first.get_one::<std::path::PathBuf>("config").cloned();
    let sources = read_sources(file.as_deref(), &names).map_err(ConfigError::Invalid)?;

    let mut extra: Vec<OsString> = Vec::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for (name, (value, from)) in sources {
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(name.as_str()))
        else {
            continue;
        };
        let id = arg.get_id().as_str();
        if first.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value.as_str() {
                "true" | "yes" | "1" => extra.push(format!("--{name}").into()),
                "false" | "no" | "0" => {}
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "{from}: '{other}' is not true or false"
                    )))
                }
            }
        } else {
            extra.push(format!("--{name}={value}").into());
        }
        origin.insert(name, from);
    }
    let mut full = Vec::with_capacity(argv.len() + extra.len());
    full.extend(argv.first().cloned());
    full.extend(extra);
    full.extend(argv.into_iter().skip(1));
    command.try_get_matches_from(full).map_err(|e| {
        // Name the source of a bad value that did not come from the command line.
        let bad = e.get(clap::error::ContextKind::InvalidArg).map(|a| a.to_string());
        let from = bad.as_deref().and_then(|a| {
            let name = a.trim_start_matches("--").split([' ', '=']).next().unwrap_or("");
            origin.get(name)
        });
        match from {
            Some(from) => {
                let text = e.to_string();
                let line = text.lines().next().unwrap_or("").trim_start_matches("error: ");
                ConfigError::Invalid(format!("{from}: {line}"))
            }
            None => ConfigError::Clap(e),
        }
    })
}

/// The effective configuration as a config file: every setting with its
/// help as a comment (secrets hidden).
pub fn render(argv: Vec<OsString>) -> Result<String, ConfigError> {
    let matches = matches_from(argv)?;
    let mut out = String::from(
        "# raftcache configuration (raftcache --print-config): flags win over RAFTCACHE_*\n\
         # environment variables, which win over this file.\n",
    );
    for arg in Args::command().get_arguments() {
        let Some(name) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&name) || arg.is_hide_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        let help =
            arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        out.push('\n');
        for line in help.lines() {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        let value: Option<String> = if matches!(arg.get_action(), ArgAction::SetTrue) {
            Some(matches.get_flag(id).to_string())
        } else {
            matches.get_raw(id).map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",")
            })
        };
        match value {
            Some(_) if SECRETS.contains(&name) => out.push_str(&format!("{name} = \"(hidden)\"\n")),
            Some(v) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                out.push_str(&format!("{name} = {v}\n"))
            }
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 19 => {
                out.push_str(&format!("{name} = {v}\n"))
            }
            Some(v) => out.push_str(&format!("{name} = {}\n", toml_string(&v))),
            None => out.push_str(&format!("# {name} =\n")),
        }
    }
    Ok(out)
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
