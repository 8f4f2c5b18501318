//! Where the workspace is and how to ask cargo about it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The workspace root: the parent of the xtask crate.
pub(crate) fn root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // xtask/ always sits directly under the workspace root.
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// A shell whose current directory is `root`.
pub(crate) fn shell_at(root: &Path) -> Result<Shell> {
    let sh = Shell::new().context("cannot start a shell")?;
    sh.change_dir(root);
    Ok(sh)
}

/// `cargo metadata --format-version 1 --no-deps` of the workspace at `root`, parsed.
pub(crate) fn metadata(root: &Path) -> Result<serde_json::Value> {
    let sh = shell_at(root)?;
    let text = cmd!(sh, "cargo metadata --format-version 1 --no-deps")
        .quiet()
        .read()
        .context("cargo metadata failed")?;
    serde_json::from_str(&text).context("cargo metadata printed invalid JSON")
}

/// The version of the workspace package `name`, as cargo resolves it.
pub(crate) fn package_version(metadata: &serde_json::Value, name: &str) -> Result<String> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    for package in packages {
        if package["name"] == name {
            let version = package["version"]
                .as_str()
                .context("package without a version")?;
            return Ok(version.to_owned());
        }
    }
    bail!("package {name} is not in the workspace")
}

/// The host target triple, from `rustc -vV`.
pub(crate) fn host_triple(root: &Path) -> Result<String> {
    let sh = shell_at(root)?;
    let text = cmd!(sh, "rustc -vV")
        .quiet()
        .read()
        .context("rustc -vV failed")?;
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("rustc -vV printed no host line")
}
