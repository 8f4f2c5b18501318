//! Usage errors keep clap's whole message, on one line, and point at the subcommand's help.

use super::seen;
use crate::common::World;

/// `stint ARGS` as a user's shell runs it (no STINT_DB, which clap counts as a given --db).
fn usage(args: &[&str]) -> (Option<i32>, String, String) {
    let w = World::sqlite();
    let mut cmd = w.cmd();
    cmd.env_remove("STINT_DB").args(args);
    seen(&cmd.output().expect("run"))
}

#[test]
fn missing_arguments_are_listed() {
    let (code, stderr, stdout) = usage(&["run"]);
    assert_eq!(
        (code, stderr.as_str(), stdout.as_str()),
        (
            Some(2),
            "stint: USAGE: the following required arguments were not provided: <COMMAND>...; \
             usage: stint run -- <COMMAND>... (see 'stint run --help')\n",
            ""
        )
    );
}

#[test]
fn a_misspelt_command_keeps_did_you_mean() {
    let (code, stderr, _) = usage(&["atempts"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "stint: USAGE: unrecognized subcommand 'atempts'; tip: a similar subcommand exists: \
         'attempts'; usage: stint [OPTIONS] <COMMAND> (see 'stint --help')\n"
    );
}

#[test]
fn a_command_without_double_dash_gets_the_tip() {
    let (code, stderr, _) = usage(&["run", "--retries", "1", "true"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "stint: USAGE: unexpected argument 'true' found; tip: the command to run goes after \
         '--': stint run --retries 1 -- true; usage: stint run [OPTIONS] -- <COMMAND>... (see \
         'stint run --help')\n"
    );
}

#[test]
fn a_bad_value_names_the_flag_and_the_subcommand_help() {
    let (code, stderr, _) = usage(&["--db", "x.db", "attempts", "r", "--iteration", "two"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with(
            "stint: USAGE: invalid value 'two' for '--iteration <N>': invalid digit found in string"
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(" (see 'stint attempts --help')\n"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
