//! Tidy checks: repository rules written as ordinary tests, so `cargo test` enforces them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::cmd;

use crate::{ci, codegen, project};

/// Library crates that must not print: output belongs to the CLI, diagnostics to `tracing`.
const LIBRARY_CRATES: &[&str] = &[
    "crates/domain",
    "crates/ports",
    "crates/engine",
    "crates/adapters-memory",
    "crates/adapters-sqlite",
    "crates/adapters-postgres",
];
const PRINT_MACROS: &[&str] = &["println!", "eprintln!", "print!", "eprint!", "dbg!"];
/// Async runtimes, database drivers and clock crates: none may reach `stint-domain`.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "async-io",
    "async-executor",
    "mio",
    "futures-executor",
    "sqlx",
    "sqlx-core",
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "diesel",
    "sea-orm",
    "redis",
    "chrono",
    "time",
    "jiff",
    "humantime",
    "reqwest",
    "hyper",
];

#[test]
fn publishable_crates_have_complete_metadata() -> Result<()> {
    let metadata = project::metadata(&project::root())?;
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let name = package["name"].as_str().unwrap_or("?");
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            continue; // publish = false
        }
        for field in ["description", "license", "repository", "readme"] {
            if package[field].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{name}: no {field}"));
            }
        }
        if let (Some(readme), Some(manifest)) = (
            package["readme"].as_str(),
            package["manifest_path"].as_str(),
        ) {
            let readme_path = Path::new(manifest).with_file_name(readme);
            if !readme_path.is_file() {
                problems.push(format!("{name}: readme {readme} does not exist"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "crate metadata incomplete:\n{}",
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn library_crates_do_not_print() -> Result<()> {
    let root = project::root();
    let mut offences = Vec::new();
    for krate in LIBRARY_CRATES {
        for file in rust_files(&root.join(krate).join("src"))? {
            let text = fs::read_to_string(&file)?;
            for (line_number, line) in non_test_lines(&text) {
                if PRINT_MACROS.iter().any(|mac| calls_macro(line, mac)) {
                    let shown = file.strip_prefix(&root).unwrap_or(&file).display();
                    offences.push(format!("{shown}:{line_number}: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "library code prints (use tracing or return the value):\n{}",
        offences.join("\n")
    );
    Ok(())
}

#[test]
fn domain_and_ports_deny_missing_docs() -> Result<()> {
    let root = project::root();
    for krate in ["crates/domain", "crates/ports"] {
        let lib = fs::read_to_string(root.join(krate).join("src/lib.rs"))?;
        assert!(
            lib.lines()
                .any(|line| line.trim() == "#![deny(missing_docs)]"),
            "{krate}/src/lib.rs must keep #![deny(missing_docs)] so every public item is documented"
        );
    }
    Ok(())
}

#[test]
fn domain_depends_on_no_runtime_database_or_clock() -> Result<()> {
    let sh = project::shell_at(&project::root())?;
    let tree = cmd!(sh, "cargo tree -p stint-domain -e normal --prefix none")
        .quiet()
        .read()?;
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN_IN_DOMAIN.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "stint-domain must stay pure, but depends on: {found:?}"
    );
    Ok(())
}

#[test]
fn generated_files_are_up_to_date() -> Result<()> {
    let drift = codegen::drifted(&project::root(), &codegen::generate()?)?;
    assert!(
        drift.is_empty(),
        "run `cargo xtask codegen`:\n{}",
        drift.join("\n")
    );
    Ok(())
}

#[test]
fn generated_files_hold_no_machine_details() -> Result<()> {
    let mut private = Vec::new();
    if let Ok(home) = std::env::var("HOME") {
        private.extend((home.len() > 1).then_some(home));
    }
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_owned();
        private.extend((host.len() > 1 && host != "localhost").then_some(host));
    }
    private.push(project::root().display().to_string());
    for file in codegen::generate()? {
        for secret in &private {
            assert!(
                !file.contents.contains(secret.as_str()),
                "{} contains {secret:?}",
                file.path
            );
        }
    }
    Ok(())
}

#[test]
fn readme_gives_the_ci_test_command() -> Result<()> {
    let readme =
        fs::read_to_string(project::root().join("README.md")).context("README.md is missing")?;
    assert!(
        readme.contains(ci::TEST_COMMAND),
        "README.md must give the test command `{}`",
        ci::TEST_COMMAND
    );
    Ok(())
}

#[test]
fn ci_script_runs_what_xtask_ci_runs() -> Result<()> {
    let script =
        fs::read_to_string(project::root().join(".ci/run")).context(".ci/run is missing")?;
    let cargo_lines: Vec<&str> = script
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| line.starts_with("cargo ") && !line.starts_with("cargo --version"))
        .collect();
    if cargo_lines
        .iter()
        .any(|line| line.starts_with("cargo xtask ci"))
    {
        return Ok(());
    }
    let expected: Vec<&str> = ci::STEPS
        .iter()
        .copied()
        .chain([ci::CODEGEN_CHECK])
        .collect();
    assert_eq!(
        cargo_lines, expected,
        ".ci/run must call `cargo xtask ci` or run its steps in its order"
    );
    Ok(())
}

/// Test-only files, by name: test modules and the support code of other crates' tests.
const TEST_FILE_NAMES: &[&str] = &["tests.rs", "test_support.rs", "testing.rs"];

/// Every `.rs` file under `dir`, skipping `tests` folders and test-only files.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(files);
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() && name != "tests" {
            files.extend(rust_files(&path)?);
        } else if name.ends_with(".rs") && !TEST_FILE_NAMES.contains(&name.as_str()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Lines (numbered from 1) outside comments and items under a test-only `#[cfg(..)]` (one that
/// names `test`, such as `cfg(test)` or `cfg(feature = "test-support")`).
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let mut lines = Vec::new();
    let mut pending_cfg_test = false;
    let mut skip_depth: Option<i64> = None;
    let mut depth: i64 = 0;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let trimmed = code.trim();
        if skip_depth.is_none()
            && pending_cfg_test
            && !trimmed.is_empty()
            && !trimmed.starts_with("#[")
        {
            skip_depth = Some(depth);
            pending_cfg_test = false;
        }
        if trimmed.starts_with("#[cfg(") && trimmed.contains("test") {
            pending_cfg_test = true;
        }
        depth += brace_balance(code);
        match skip_depth {
            Some(start)
                if depth <= start && (code.contains('}') || code.trim_end().ends_with(';')) =>
            {
                skip_depth = None;
            }
            Some(_) => {}
            None if !trimmed.is_empty() => lines.push((index + 1, line)),
            None => {}
        }
    }
    lines
}

fn brace_balance(code: &str) -> i64 {
    code.chars()
        .map(|c| i64::from(c == '{') - i64::from(c == '}'))
        .sum()
}

/// Whether `line` calls `mac` as a whole name (so `eprintln!` is not read as `println!`).
fn calls_macro(line: &str, mac: &str) -> bool {
    line.match_indices(mac).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_print_scanner_skips_test_modules_and_comments() {
    let text = "fn a() {\n    println!(\"x\");\n}\n// dbg!(y)\n#[cfg(test)]\nmod tests {\n    fn b() {\n        dbg!(1);\n    }\n}\nfn c() { eprint!(\"z\") }\n";
    let flagged: Vec<usize> = non_test_lines(text)
        .into_iter()
        .filter(|(_, line)| PRINT_MACROS.iter().any(|mac| calls_macro(line, mac)))
        .map(|(number, _)| number)
        .collect();
    assert_eq!(flagged, [2, 11]);
    assert!(!calls_macro("eprintln!(\"x\")", "println!"));
    assert!(!calls_macro("tracing::info!(\"x\")", "print!"));
}
