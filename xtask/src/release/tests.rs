//! `release bump` and the consistency check, run on a temporary copy of the workspace manifests.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use toml_edit::DocumentMut;
use xshell::cmd;

use super::{Version, bump, changelog, manifest};
use crate::project;

const OLD_CHANGELOG: &str = "# Changelog\n\n## [Unreleased]\n\n- A note written by hand.\n\n## [0.0.9] - 2025-01-01\n\n- Old.\n";

/// Copies the real manifests into `dir`, adds a member that pins its own version and depends on
/// workspace crates by path, writes a changelog, and commits twice after a `v0.1.0` tag.
fn workspace_copy(dir: &Path) -> Result<()> {
    let root = project::root();
    for manifest in manifest::manifests(&root)? {
        let relative = manifest.strip_prefix(&root)?;
        fs::create_dir_all(
            dir.join(relative)
                .parent()
                .context("manifest without a folder")?,
        )?;
        fs::copy(&manifest, dir.join(relative))?;
    }
    let mut doc: DocumentMut = fs::read_to_string(dir.join("Cargo.toml"))?.parse()?;
    doc["workspace"]["members"]
        .as_array_mut()
        .context("no members")?
        .push("pinned");
    fs::write(dir.join("Cargo.toml"), doc.to_string())?;
    fs::create_dir_all(dir.join("pinned"))?;
    let current = manifest::workspace_version(dir)?;
    fs::write(
        dir.join("pinned/Cargo.toml"),
        format!(
            "[package]\nname = \"pinned\"\nversion = \"{current}\" # pinned on purpose\n\n\
             [dependencies]\nstint-domain = {{ path = \"../crates/domain\", version = \"{current}\" }}\n\n\
             [target.'cfg(unix)'.dev-dependencies.stint-ports]\npath = \"../crates/ports\"\nversion = \"={current}\"\n"
        ),
    )?;
    fs::write(dir.join("CHANGELOG.md"), OLD_CHANGELOG)?;
    let sh = project::shell_at(dir)?;
    let git = [
        "-c",
        "user.name=xtask test",
        "-c",
        "user.email=xtask@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ];
    cmd!(sh, "git init -q").quiet().run()?;
    cmd!(
        sh,
        "git {git...} commit -q --allow-empty -m 'Initial import'"
    )
    .run()?;
    cmd!(sh, "git tag v0.1.0").quiet().run()?;
    cmd!(
        sh,
        "git {git...} commit -q --allow-empty -m 'Add heartbeat coalescing'"
    )
    .run()?;
    cmd!(
        sh,
        "git {git...} commit -q --allow-empty -m 'Fix the retry count'"
    )
    .run()?;
    cmd!(
        sh,
        "git {git...} commit -q --allow-empty -m 'Rename the store trait'"
    )
    .run()?;
    Ok(())
}

#[test]
fn bump_changes_every_manifest_consistently_and_writes_the_changelog() -> Result<()> {
    let dir = tempfile::tempdir()?;
    workspace_copy(dir.path())?;
    let current = manifest::workspace_version(dir.path())?;
    let new = bump(dir.path(), "minor", "2026-05-01")?;
    assert_eq!(
        new,
        Version {
            minor: current.minor + 1,
            patch: 0,
            ..current
        }
    );
    assert_eq!(manifest::workspace_version(dir.path())?, new);
    assert_eq!(
        manifest::version_mismatches(dir.path())?,
        Vec::<String>::new()
    );

    let root: DocumentMut = fs::read_to_string(dir.path().join("Cargo.toml"))?.parse()?;
    let dependencies = root["workspace"]["dependencies"]
        .as_table()
        .context("no dependencies")?;
    for (name, dependency) in dependencies
        .iter()
        .filter(|(name, _)| name.starts_with("stint-"))
    {
        assert_eq!(
            dependency["version"].as_str(),
            Some(new.to_string().as_str()),
            "{name}"
        );
    }
    let pinned = fs::read_to_string(dir.path().join("pinned/Cargo.toml"))?;
    assert!(
        pinned.contains(&format!("version = \"{new}\" # pinned on purpose")),
        "{pinned}"
    );
    assert!(
        pinned.contains(&format!("path = \"../crates/domain\", version = \"{new}\"")),
        "{pinned}"
    );
    assert!(
        pinned.contains(&format!("version = \"={new}\"")),
        "{pinned}"
    );

    let changelog = fs::read_to_string(dir.path().join("CHANGELOG.md"))?;
    let expected = format!(
        "# Changelog\n\n## [Unreleased]\n\n## [{new}] - 2026-05-01\n\n- A note written by hand.\n\n\
         ### Added\n\n- Add heartbeat coalescing\n\n### Fixed\n\n- Fix the retry count\n\n\
         ### Changed\n\n- Rename the store trait\n\n## [0.0.9] - 2025-01-01\n\n- Old.\n"
    );
    assert_eq!(changelog, expected);
    Ok(())
}

#[test]
fn bump_to_a_lower_or_equal_version_is_refused_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    workspace_copy(dir.path())?;
    let before = fs::read_to_string(dir.path().join("Cargo.toml"))?;
    let current = manifest::workspace_version(dir.path())?;
    let error = bump(dir.path(), &current.to_string(), "2026-05-01")
        .err()
        .context("equal version accepted")?;
    assert_eq!(
        error.to_string(),
        format!("version {current} is not greater than the current version {current}")
    );
    let error = bump(dir.path(), "0.0.1", "2026-05-01")
        .err()
        .context("lower version accepted")?;
    assert_eq!(
        error.to_string(),
        format!("version 0.0.1 is not greater than the current version {current}")
    );
    assert_eq!(fs::read_to_string(dir.path().join("Cargo.toml"))?, before);
    assert_eq!(
        fs::read_to_string(dir.path().join("CHANGELOG.md"))?,
        OLD_CHANGELOG
    );
    Ok(())
}

#[test]
fn a_manifest_out_of_step_is_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    workspace_copy(dir.path())?;
    let path = dir.path().join("pinned/Cargo.toml");
    let text = fs::read_to_string(&path)?
        .replacen("# pinned on purpose", "", 1)
        .replacen("version = \"", "version = \"9", 1);
    fs::write(&path, text)?;
    let mismatches = manifest::version_mismatches(dir.path())?;
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert!(
        mismatches[0].starts_with("pinned/Cargo.toml: package version 9"),
        "{mismatches:?}"
    );
    Ok(())
}

#[test]
fn versions_parse_and_step() -> Result<()> {
    let current: Version = "1.2.3".parse()?;
    assert_eq!(current.next("patch")?.to_string(), "1.2.4");
    assert_eq!(current.next("minor")?.to_string(), "1.3.0");
    assert_eq!(current.next("major")?.to_string(), "2.0.0");
    assert_eq!(current.next("1.10.0")?.to_string(), "1.10.0");
    assert!(current.next("1.2").is_err());
    assert!(current.next("huge").is_err());
    assert!(current.next("1.2.3-rc.1").is_err());
    Ok(())
}

#[test]
fn a_missing_changelog_is_created() -> Result<()> {
    let subjects = vec!["Initial import".to_owned()];
    let text = changelog::insert_release(None, "0.1.0".parse()?, "2026-05-01", &subjects)?;
    assert!(text.starts_with("# Changelog\n"), "{text}");
    assert!(
        text.ends_with("## [0.1.0] - 2026-05-01\n\n### Changed\n\n- Initial import\n"),
        "{text}"
    );
    assert!(changelog::has_section(&text, "0.1.0".parse()?));
    assert!(
        changelog::insert_release(Some(&text), "0.1.0".parse()?, "2026-05-02", &subjects).is_err()
    );
    Ok(())
}

#[test]
fn civil_dates_are_right() {
    assert_eq!(changelog::civil_date(0), "1970-01-01");
    assert_eq!(changelog::civil_date(11_016), "2000-02-29");
    assert_eq!(changelog::civil_date(20_454), "2026-01-01");
}
