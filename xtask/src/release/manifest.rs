//! Reading and rewriting the version fields of the workspace's manifests, keeping their layout.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::Version;

/// Dependency tables whose local (`path`) entries carry the workspace version.
const DEPENDENCY_TABLES: &[&str] = &["dependencies", "dev-dependencies", "build-dependencies"];

/// `[workspace.package].version` of the root manifest.
pub(super) fn workspace_version(root: &Path) -> Result<Version> {
    let doc = read(&root.join("Cargo.toml"))?;
    let version = doc["workspace"]["package"]["version"]
        .as_str()
        .context("Cargo.toml has no [workspace.package] version")?;
    version.parse()
}

/// Writes `version` into every manifest: the workspace version, every package that pins its own
/// version, and every version requirement of a path dependency.
pub(super) fn set_versions(root: &Path, version: Version) -> Result<()> {
    for path in manifests(root)? {
        let mut doc = read(&path)?;
        if let Some(package) = doc.get_mut("workspace").and_then(|w| w.get_mut("package")) {
            set_if_string(package.get_mut("version"), &version.to_string());
        }
        if let Some(package) = doc.get_mut("package") {
            set_if_string(package.get_mut("version"), &version.to_string());
        }
        for dependency in path_dependencies_mut(&mut doc) {
            let requirement = dependency
                .get("version")
                .and_then(Item::as_str)
                .unwrap_or_default();
            let operator = if requirement.starts_with('=') {
                "="
            } else {
                ""
            };
            set_if_string(
                dependency.get_mut("version"),
                &format!("{operator}{version}"),
            );
        }
        fs::write(&path, doc.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One line per manifest field that disagrees with the workspace version.
pub(super) fn version_mismatches(root: &Path) -> Result<Vec<String>> {
    let version = workspace_version(root)?.to_string();
    let mut mismatches = Vec::new();
    for path in manifests(root)? {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut doc = read(&path)?;
        let own = doc
            .get("package")
            .and_then(|p| p.get("version"))
            .and_then(Item::as_str);
        if let Some(own) = own.filter(|own| *own != version) {
            mismatches.push(format!(
                "{shown}: package version {own}, workspace version {version}"
            ));
        }
        for dependency in path_dependencies_mut(&mut doc) {
            let Some(requirement) = dependency.get("version").and_then(Item::as_str) else {
                continue;
            };
            if requirement.trim_start_matches(['=', '^']) != version {
                mismatches.push(format!(
                    "{shown}: a path dependency requires {requirement}, not {version}"
                ));
            }
        }
    }
    Ok(mismatches)
}

/// The root manifest and the manifest of every member (`dir/*` globs expanded), sorted.
pub(super) fn manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let doc = read(&root.join("Cargo.toml"))?;
    let members = doc["workspace"]["members"]
        .as_array()
        .context("Cargo.toml has no workspace members")?;
    let mut paths = vec![root.join("Cargo.toml")];
    for member in members.iter().filter_map(Value::as_str) {
        match member.strip_suffix("/*") {
            Some(parent) => paths.extend(globbed_members(&root.join(parent))?),
            None => paths.push(root.join(member).join("Cargo.toml")),
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn globbed_members(parent: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(parent).with_context(|| format!("cannot list {}", parent.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let manifest = entry?.path().join("Cargo.toml");
        if manifest.is_file() {
            paths.push(manifest);
        }
    }
    Ok(paths)
}

fn read(path: &Path) -> Result<DocumentMut> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Every dependency entry with a `path` key: in `[workspace.dependencies]`, in the package's
/// dependency tables and in their `[target.'cfg(..)'.*]` forms.
fn path_dependencies_mut(doc: &mut DocumentMut) -> Vec<&mut dyn TableLike> {
    let mut tables: Vec<&mut Item> = Vec::new();
    for (key, item) in doc.as_table_mut().iter_mut() {
        match key.get() {
            "workspace" => tables.extend(item.get_mut("dependencies")),
            "target" => {
                let Some(targets) = item.as_table_like_mut() else {
                    continue;
                };
                for (_, target) in targets.iter_mut() {
                    let Some(target) = target.as_table_like_mut() else {
                        continue;
                    };
                    for (name, table) in target.iter_mut() {
                        if DEPENDENCY_TABLES.contains(&name.get()) {
                            tables.push(table);
                        }
                    }
                }
            }
            name if DEPENDENCY_TABLES.contains(&name) => tables.push(item),
            _ => {}
        }
    }
    tables
        .into_iter()
        .filter_map(Item::as_table_like_mut)
        .flat_map(|table| table.iter_mut().map(|(_, dependency)| dependency))
        .filter_map(Item::as_table_like_mut)
        .filter(|dependency| dependency.contains_key("path"))
        .collect()
}

/// Replaces a string value in place, keeping its surrounding whitespace and comments.
fn set_if_string(item: Option<&mut Item>, new: &str) {
    let Some(value) = item.and_then(Item::as_value_mut) else {
        return;
    };
    if value.is_str() {
        let decor = value.decor().clone();
        *value = Value::from(new);
        *value.decor_mut() = decor;
    }
}
