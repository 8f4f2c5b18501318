//! `cargo xtask release bump|check`: one version for the whole workspace, a changelog section per
//! release, and the checks to run before tagging. Nothing here publishes, tags or pushes.

mod changelog;
mod manifest;
mod version;

use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result, bail};
use xshell::cmd;

use crate::project;
pub(crate) use version::Version;

/// Bumps the workspace at `root` and prints what to do next.
pub(crate) fn run_bump(root: &Path, level: &str) -> Result<()> {
    let new = bump(root, level, &changelog::today_utc())?;
    println!("release: every manifest now says {new}; CHANGELOG.md has a [{new}] section");
    let sh = project::shell_at(root)?;
    if cmd!(sh, "cargo update --workspace --offline")
        .quiet()
        .run()
        .is_err()
    {
        eprintln!("release: Cargo.lock not refreshed: run `cargo update --workspace`");
    }
    println!("release: review CHANGELOG.md, commit, then run `cargo xtask release check`");
    Ok(())
}

/// Sets version `level` (major, minor, patch or X.Y.Z) in every manifest under `root` and adds its
/// changelog section dated `today`, built from the commits since the last `v*` tag.
pub(crate) fn bump(root: &Path, level: &str, today: &str) -> Result<Version> {
    let current = manifest::workspace_version(root)?;
    let new = current.next(level)?;
    let subjects = commit_subjects_since_last_tag(root)?;
    let path = root.join(changelog::FILE);
    let existing = std::fs::read_to_string(&path).ok();
    let text = changelog::insert_release(existing.as_deref(), new, today, &subjects)?;
    manifest::set_versions(root, new)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", changelog::FILE))?;
    Ok(new)
}

/// The subjects of the commits since the last `v*` tag, oldest first (all commits if none).
fn commit_subjects_since_last_tag(root: &Path) -> Result<Vec<String>> {
    let sh = project::shell_at(root)?;
    let last_tag = cmd!(sh, "git describe --tags --abbrev=0 --match v*")
        .quiet()
        .ignore_stderr()
        .read()
        .ok();
    let range = match last_tag {
        Some(tag) => format!("{tag}..HEAD"),
        None => "HEAD".to_owned(),
    };
    let log = cmd!(sh, "git log --no-merges --reverse --format=%s {range}")
        .quiet()
        .read()
        .context("git log failed: is this a git repository with at least one commit?")?;
    Ok(log
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.trim().is_empty())
        .collect())
}

/// Runs every release check on `root`, prints each result and the tag it would create.
pub(crate) fn run_check(root: &Path, no_verify: bool) -> Result<()> {
    let version = manifest::workspace_version(root)?;
    let mut failures = 0;
    let mut report = |ok: bool, line: String| {
        println!("{} {line}", if ok { "ok:  " } else { "FAIL:" });
        failures += usize::from(!ok);
    };
    let mismatches = manifest::version_mismatches(root)?;
    report(
        mismatches.is_empty(),
        format!("every manifest says {version}"),
    );
    mismatches.iter().for_each(|line| println!("       {line}"));
    let changelog = std::fs::read_to_string(root.join(changelog::FILE)).unwrap_or_default();
    report(
        changelog::has_section(&changelog, version),
        format!("CHANGELOG.md has a [{version}] section"),
    );
    let dirty = dirty_files(root)?;
    report(dirty.is_empty(), "the working tree is clean".to_owned());
    dirty.iter().for_each(|line| println!("       {line}"));
    let (ok, detail) = publish_dry_run(root, no_verify, !dirty.is_empty())?;
    report(
        ok,
        "cargo publish --dry-run packages every publishable crate".to_owned(),
    );
    detail.iter().for_each(|line| println!("       {line}"));
    if failures > 0 {
        bail!("{failures} release check(s) failed; the tag would be v{version}");
    }
    println!(
        "release: ready; would create tag v{version} (nothing was tagged, published or pushed)"
    );
    Ok(())
}

/// `git status --porcelain`, one line per changed or untracked file.
fn dirty_files(root: &Path) -> Result<Vec<String>> {
    let sh = project::shell_at(root)?;
    let status = cmd!(sh, "git status --porcelain")
        .quiet()
        .read()
        .context("git status failed")?;
    Ok(status.lines().map(str::to_owned).collect())
}

/// Runs `cargo publish --workspace --dry-run`; on failure returns the lines worth showing.
fn publish_dry_run(root: &Path, no_verify: bool, dirty: bool) -> Result<(bool, Vec<String>)> {
    let sh = project::shell_at(root)?;
    let mut args = vec!["publish", "--workspace", "--dry-run"];
    if no_verify {
        args.push("--no-verify");
    }
    if dirty {
        // The dirty tree is already reported; packaging it anyway still shows whether it would pass.
        args.push("--allow-dirty");
    }
    println!("release: cargo {}", args.join(" "));
    let output = sh
        .cmd("cargo")
        .args(&args)
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run cargo publish")?;
    Ok(publish_verdict(&output))
}

fn publish_verdict(output: &Output) -> (bool, Vec<String>) {
    if output.status.success() {
        return (true, Vec::new());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<String> = stderr
        .lines()
        .filter(|line| is_error_line(line))
        .map(|line| line.trim().to_owned())
        .collect();
    let mut detail = if errors.is_empty() {
        stderr
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(str::to_owned)
            .collect()
    } else {
        errors
    };
    if is_network_failure(&stderr) {
        detail.insert(
            0,
            "crates.io could not be reached (network), so the dry run could not finish".to_owned(),
        );
    }
    (false, detail)
}

fn is_error_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("error") || line.starts_with("Caused by") || line.starts_with("failed")
}

fn is_network_failure(stderr: &str) -> bool {
    const SIGNS: &[&str] = &[
        "network",
        "Could not resolve host",
        "Couldn't resolve host",
        "failed to connect",
        "Connection refused",
        "timed out",
        "SSL",
        "failed to download",
        "failed to query replaced source",
        "failed to get successful HTTP response",
    ];
    SIGNS.iter().any(|sign| stderr.contains(sign))
}

#[cfg(test)]
mod tests;
