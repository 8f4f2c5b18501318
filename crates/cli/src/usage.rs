//! Usage errors: clap's whole message, on one line, pointing at the right `--help`.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::exit::CliError;

/// clap's `error` for the command line `argv` as one line: the error, what it lists, its tips
/// and the usage, then the `--help` of the subcommand `argv` names (`stint run --help`).
pub(crate) fn one_line(error: &clap::Error, argv: &[OsString]) -> CliError {
    let subcommand = subcommand(argv);
    let mut message = join(&error.render().to_string());
    if let Some(tip) = double_dash_tip(error, argv, subcommand.as_deref()) {
        message = insert_tip(message, &tip);
    }
    let help = subcommand.map_or_else(|| "stint".to_owned(), |name| format!("stint {name}"));
    message.push_str(&format!(" (see '{help} --help')"));
    CliError::usage(message)
}

/// clap's rendered message on one line: `error; tip: ...; usage: ...` (without its last line,
/// which points at `--help` without naming the subcommand).
fn join(rendered: &str) -> String {
    let mut head = String::new();
    let mut items = Vec::new();
    let mut tips = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(error) = line.strip_prefix("error:") {
            head = error.trim().to_owned();
        } else if let Some(tip) = line.strip_prefix("tip:") {
            tips.push(format!("tip: {}", tip.trim()));
        } else if let Some(text) = line.strip_prefix("Usage:") {
            usage.get_or_insert_with(|| text.trim().to_owned());
        } else if !line.starts_with("For more information") && usage.is_none() {
            items.push(line.to_owned());
        }
    }
    if head.is_empty() {
        "invalid arguments".clone_into(&mut head);
    }
    let mut message = head;
    if !items.is_empty() {
        message.push_str(if message.ends_with(':') { " " } else { ": " });
        message.push_str(&items.join(", "));
    }
    for tip in tips {
        message.push_str("; ");
        message.push_str(&tip);
    }
    if let Some(usage) = usage {
        message.push_str("; usage: ");
        message.push_str(&usage);
    }
    message
}

/// Puts `tip` before the usage part of `message` (or at its end).
fn insert_tip(message: String, tip: &str) -> String {
    match message.split_once("; usage: ") {
        Some((before, usage)) => format!("{before}; tip: {tip}; usage: {usage}"),
        None => format!("{message}; tip: {tip}"),
    }
}

/// The subcommand `argv` names, skipping global options (`--db URL`, `-q`).
fn subcommand(argv: &[OsString]) -> Option<String> {
    let command = crate::command();
    let mut words = argv.iter().skip(1).map(|w| w.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--db" {
            words.next();
        } else if word == "--" {
            return None;
        } else if !word.starts_with('-') {
            return command
                .get_subcommands()
                .find(|sub| sub.get_name() == word)
                .map(|sub| sub.get_name().to_owned());
        }
    }
    None
}

/// `stint run make test` fails on `make`: the command belongs after `--`, so say so with the
/// corrected command line.
fn double_dash_tip(
    error: &clap::Error,
    argv: &[OsString],
    subcommand: Option<&str>,
) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument || subcommand != Some("run") {
        return None;
    }
    let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    if invalid.starts_with('-') {
        return None;
    }
    let at = argv
        .iter()
        .rposition(|w| w.to_string_lossy() == invalid.as_str())?;
    let mut fixed: Vec<String> = vec!["stint".to_owned()];
    fixed.extend(
        argv.iter()
            .take(at)
            .skip(1)
            .map(|w| quote(&w.to_string_lossy())),
    );
    fixed.push("--".to_owned());
    fixed.extend(argv.iter().skip(at).map(|w| quote(&w.to_string_lossy())));
    Some(format!(
        "the command to run goes after '--': {}",
        fixed.join(" ")
    ))
}

/// `word` as a shell would need it: as is when plain, else in single quotes.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn usage_error(args: &[&str]) -> String {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let error = crate::Cli::try_parse_from(&argv).expect_err("a usage error");
        one_line(&error, &argv).to_string()
    }

    #[test]
    fn everything_clap_says_is_kept_on_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        <COMMAND>...\n  --x <X>\n\nUsage: stint run [OPTIONS] -- <COMMAND>...\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            join(rendered),
            "the following required arguments were not provided: <COMMAND>..., --x <X>; \
             usage: stint run [OPTIONS] -- <COMMAND>..."
        );
        assert_eq!(join(""), "invalid arguments");
    }

    #[test]
    fn the_hint_names_the_subcommand() {
        assert_eq!(
            usage_error(&[
                "stint",
                "--db",
                "x.db",
                "-q",
                "attempts",
                "r",
                "--iteration",
                "x"
            ]),
            "USAGE: invalid value 'x' for '--iteration <N>': invalid digit found in string \
             (see 'stint attempts --help')"
        );
        assert!(usage_error(&["stint", "frobnicate"]).ends_with(" (see 'stint --help')"));
    }

    #[test]
    fn a_command_without_double_dash_gets_the_corrected_line() {
        assert_eq!(
            usage_error(&["stint", "run", "--retries", "2", "make", "it's"]),
            "USAGE: unexpected argument 'make' found; tip: the command to run goes after '--': \
             stint run --retries 2 -- make 'it'\\''s'; usage: stint run [OPTIONS] -- \
             <COMMAND>... (see 'stint run --help')"
        );
    }
}
