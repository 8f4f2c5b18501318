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
    "crates/telemetry",
];
const PRINT_MACROS: &[&str] = &["println!", "eprintln!", "print!", "eprint!", "dbg!"];
/// Async runtimes, clock crates and network clients: none may reach `stint-domain` (nor may
/// a database driver, [`DATABASE_CRATES`], nor an adapter).
const RUNTIME_CLOCK_AND_NETWORK_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "async-io",
    "async-executor",
    "mio",
    "futures-executor",
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
fn crates_that_embed_migrations_rebuild_when_one_is_added() -> Result<()> {
    let root = project::root();
    let mut missing = Vec::new();
    let mut embedding = 0;
    for entry in fs::read_dir(root.join("crates"))? {
        let krate = entry?.path();
        let embeds = rust_files(&krate.join("src"))?.iter().any(|file| {
            fs::read_to_string(file).is_ok_and(|text| text.contains("sqlx::migrate!("))
        });
        if !embeds {
            continue;
        }
        embedding += 1;
        let build = fs::read_to_string(krate.join("build.rs")).unwrap_or_default();
        if !build.contains("cargo:rerun-if-changed=migrations") {
            missing.push(
                krate
                    .strip_prefix(&root)
                    .unwrap_or(&krate)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        embedding >= 2,
        "the scan found {embedding} crates embedding migrations, not both adapters"
    );
    assert!(
        missing.is_empty(),
        "these crates embed migrations with sqlx::migrate! but no build.rs reruns on them, so a \
         new migration would be left out of binaries built before it:\n{}",
        missing.join("\n")
    );
    Ok(())
}

/// Database drivers: only the adapters (and what wires them) may know them.
const DATABASE_CRATES: &[&str] = &[
    "sqlx",
    "sqlx-core",
    "sqlx-sqlite",
    "sqlx-postgres",
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "diesel",
    "sea-orm",
];
/// The storage adapters: only the composition root, the bench and the tests name one.
const ADAPTER_CRATES: &[&str] = &[
    "stint-adapters-memory",
    "stint-adapters-sqlite",
    "stint-adapters-postgres",
];

/// Each crate whose purity is an invariant (ARCHITECTURE.md, "stated as absences"), with the
/// dependencies it must never have, directly or not, with its default features.
fn forbidden_dependencies() -> Vec<(&'static str, Vec<&'static str>)> {
    let outward: Vec<&str> = DATABASE_CRATES
        .iter()
        .chain(ADAPTER_CRATES)
        .copied()
        .collect();
    vec![
        // Time is an argument: no runtime, no driver, no clock.
        (
            "stint-domain",
            RUNTIME_CLOCK_AND_NETWORK_CRATES
                .iter()
                .copied()
                .chain(outward.iter().copied())
                .collect(),
        ),
        // Nothing in the ports knows SQL or a database.
        ("stint-ports", outward.clone()),
        // The engine does not know which store it runs on.
        ("stint-engine", outward.clone()),
        // Nor does the worker: it runs on the queue and attempt ports.
        ("stint-worker", outward),
    ]
}

#[test]
fn pure_crates_have_none_of_their_forbidden_dependencies() -> Result<()> {
    let sh = project::shell_at(&project::root())?;
    let mut offences = Vec::new();
    for (krate, forbidden) in forbidden_dependencies() {
        let tree = cmd!(sh, "cargo tree -p {krate} -e normal --prefix none")
            .quiet()
            .read()?;
        let names = dependency_names(&tree);
        assert!(
            names.contains(&krate),
            "cargo tree of {krate} does not list the crate itself: {tree}"
        );
        for name in names {
            if forbidden.contains(&name) {
                offences.push(format!("{krate} depends on {name}"));
            }
        }
    }
    offences.sort();
    offences.dedup();
    assert!(
        offences.is_empty(),
        "a crate that must stay pure has a forbidden dependency:\n{}",
        offences.join("\n")
    );
    Ok(())
}

/// The crate names of a `cargo tree --prefix none` listing.
fn dependency_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn every_conformance_case_is_registered_in_the_suite() -> Result<()> {
    let root = project::root();
    let suite = fs::read_to_string(root.join("tests/src/lib.rs"))?;
    let registered = registered_cases(&suite);
    let mut cases = Vec::new();
    for file in rust_files(&root.join("tests/src/cases"))? {
        cases.extend(case_names(&fs::read_to_string(&file)?));
    }
    assert!(!cases.is_empty(), "no case found in tests/src/cases");
    let missing: Vec<&String> = cases.iter().filter(|c| !registered.contains(c)).collect();
    assert!(
        missing.is_empty(),
        "conformance cases never run (add them to conformance_suite! in tests/src/lib.rs): \
         {missing:?}"
    );
    Ok(())
}

/// The names of the `pub async fn NAME(fixture: &dyn Fixture)` cases in `text`.
fn case_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub async fn "))
        .filter(|rest| rest.contains("&dyn Fixture"))
        .filter_map(|rest| rest.split('(').next())
        .map(str::to_owned)
        .collect()
}

/// The case list of `conformance_suite!`: the identifiers between `@cases $mode $factory;` in
/// the `@with` arm and its closing `);`.
fn registered_cases(suite: &str) -> Vec<String> {
    let Some(start) = suite.find("@cases $mode $factory;") else {
        return Vec::new();
    };
    let list = &suite[start..];
    let list = &list[list.find(';').map_or(0, |i| i + 1)..list.find(");").unwrap_or(0)];
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn harness_free_test_binaries_have_no_libtest_tests() -> Result<()> {
    let root = project::root();
    let mut offences = Vec::new();
    for manifest in [
        "tests/Cargo.toml",
        "crates/adapters-postgres/Cargo.toml",
        "crates/cli/Cargo.toml",
    ] {
        let manifest_path = root.join(manifest);
        let text = fs::read_to_string(&manifest_path)?;
        for name in harness_free_tests(&text) {
            let dir = manifest_path.parent().context("a manifest has a folder")?;
            let file = dir.join("tests").join(format!("{name}.rs"));
            let code = fs::read_to_string(&file)
                .with_context(|| format!("{}: harness = false test {name}", manifest))?;
            if code.lines().any(|line| line.trim().starts_with("#[test]")) {
                offences.push(file.display().to_string());
            }
        }
    }
    assert!(
        offences.is_empty(),
        "a #[test] in a harness = false test binary never runs (list it in its main): {offences:?}"
    );
    Ok(())
}

/// The names of the `[[test]]` targets of a manifest that set `harness = false`.
fn harness_free_tests(manifest: &str) -> Vec<String> {
    manifest
        .split("[[")
        .filter(|section| section.starts_with("test]]"))
        .filter(|section| {
            section
                .lines()
                .any(|line| line.replace(' ', "") == "harness=false")
        })
        .filter_map(|section| {
            section.lines().find_map(|line| {
                let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
                Some(value.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
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
fn the_tidy_parsers_read_what_they_check() {
    let suite = "(@with $mode:ident $factory:path) => {\n    $crate::conformance_suite!(@cases $mode $factory;\n        a_case,\n        b_case,\n    );\n};";
    assert_eq!(registered_cases(suite), ["a_case", "b_case"]);
    let cases =
        "/// doc\npub async fn a_case(fixture: &dyn Fixture) {\n}\npub async fn helper(x: u8) {}\n";
    assert_eq!(case_names(cases), ["a_case"]);
    let manifest =
        "[lints]\n[[test]]\nname = \"pg\"\nharness = false\n\n[[test]]\nname = \"other\"\n";
    assert_eq!(harness_free_tests(manifest), ["pg"]);
    assert_eq!(
        dependency_names("stint-domain v0.1.0 (/x)\nserde v1.0.0\n"),
        ["stint-domain", "serde"]
    );
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
