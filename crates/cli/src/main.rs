//! The `stint` binary: everything lives in the `stint_cli` library.

fn main() -> std::process::ExitCode {
    stint_cli::main()
}
