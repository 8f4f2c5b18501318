//! `cargo xtask dist`: a reproducible release tarball of `stint` and its sha256.
//!
//! The same commit gives the same bytes: entries sorted, every mtime fixed (0, or
//! `SOURCE_DATE_EPOCH` when set), owner 0:0 without names, modes 0755/0644, and a gzip header
//! with mtime 0 and no file name.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use xshell::cmd;

use crate::project;

/// Output folder, relative to the workspace root.
pub(crate) const DIST_DIR: &str = "dist";

/// One file of the archive: where it is read from and its path inside the top folder.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveFile {
    pub name: String,
    pub source: PathBuf,
    pub executable: bool,
}

/// Builds `stint` in release mode and writes the tarball and its `.sha256` into `dist/`.
pub(crate) fn run(root: &Path) -> Result<()> {
    let sh = project::shell_at(root)?;
    println!("dist: cargo build --release -p stint-cli");
    cmd!(sh, "cargo build --release -p stint-cli")
        .run()
        .context("release build of stint-cli failed")?;
    let metadata = project::metadata(root)?;
    let version = project::package_version(&metadata, "stint-cli")?;
    let target = project::host_triple(root)?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let binary = Path::new(target_dir).join("release").join("stint");
    let top = format!("stint-{version}-{target}");
    let files = release_files(root, &binary)?;
    fs::create_dir_all(root.join(DIST_DIR)).context("cannot create dist/")?;
    let tarball = root.join(DIST_DIR).join(format!("{top}.tar.gz"));
    write_archive(&tarball, &top, &files, source_date_epoch())?;
    let checksum = write_sha256(&tarball)?;
    println!("dist: {DIST_DIR}/{}", file_name(&tarball)?);
    print!(
        "{}",
        fs::read_to_string(&checksum).context("cannot read the checksum back")?
    );
    Ok(())
}

/// The binary, README, licences, changelog and schemas, sorted by their name in the archive.
fn release_files(root: &Path, binary: &Path) -> Result<Vec<ArchiveFile>> {
    let file = |name: &str, source: PathBuf| ArchiveFile {
        name: name.to_owned(),
        source,
        executable: false,
    };
    let mut files = vec![ArchiveFile {
        name: "stint".to_owned(),
        source: binary.to_path_buf(),
        executable: true,
    }];
    if !root.join("README.md").is_file() {
        bail!("README.md is missing");
    }
    files.push(file("README.md", root.join("README.md")));
    for entry in sorted_entries(root)? {
        let name = file_name(&entry)?;
        if (name.starts_with("LICENSE") || name == "CHANGELOG.md") && entry.is_file() {
            files.push(file(&name, entry));
        }
    }
    for entry in sorted_entries(&root.join("schemas"))? {
        let name = file_name(&entry)?;
        if name.ends_with(".json") {
            files.push(file(&format!("schemas/{name}"), entry));
        }
    }
    Ok(files)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok(name.to_string_lossy().into_owned())
}

/// `SOURCE_DATE_EPOCH` if set to a number, else 0.
fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `files` under the folder `top` into a gzip tarball at `out`, reproducibly.
pub(crate) fn write_archive(
    out: &Path,
    top: &str,
    files: &[ArchiveFile],
    mtime: u64,
) -> Result<()> {
    let mut sorted = files.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    let mut builder = tar::Builder::new(gzip);
    append(
        &mut builder,
        &format!("{top}/"),
        tar::EntryType::Directory,
        0o755,
        mtime,
        &[],
    )?;
    let mut directories: Vec<String> = Vec::new();
    for file in &sorted {
        for directory in parent_directories(&file.name) {
            if !directories.contains(&directory) {
                append(
                    &mut builder,
                    &format!("{top}/{directory}"),
                    tar::EntryType::Directory,
                    0o755,
                    mtime,
                    &[],
                )?;
                directories.push(directory);
            }
        }
        let data = fs::read(&file.source)
            .with_context(|| format!("cannot read {}", file.source.display()))?;
        let mode = if file.executable { 0o755 } else { 0o644 };
        append(
            &mut builder,
            &format!("{top}/{}", file.name),
            tar::EntryType::Regular,
            mode,
            mtime,
            &data,
        )?;
    }
    let bytes = builder
        .into_inner()
        .context("cannot finish the tar stream")?
        .finish()
        .context("cannot finish gzip")?;
    fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

/// `a/b/c.json` gives `a/` and `a/b/`.
fn parent_directories(name: &str) -> Vec<String> {
    let mut parents = Vec::new();
    let mut prefix = String::new();
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        prefix.push_str(part);
        prefix.push('/');
        parents.push(prefix.clone());
    }
    parents
}

fn append(
    builder: &mut tar::Builder<impl std::io::Write>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    data: &[u8],
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
        .set_username("")
        .context("cannot clear the owner name")?;
    header
        .set_groupname("")
        .context("cannot clear the group name")?;
    builder
        .append_data(&mut header, path, data)
        .with_context(|| format!("cannot add {path} to the archive"))
}

/// Writes `<tarball>.sha256` as `sha256sum -c` reads it: `<hex>  <file name>`.
pub(crate) fn write_sha256(tarball: &Path) -> Result<PathBuf> {
    let bytes = fs::read(tarball).with_context(|| format!("cannot read {}", tarball.display()))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let name = file_name(tarball)?;
    let path = tarball.with_file_name(format!("{name}.sha256"));
    let mut file =
        File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{digest}  {name}")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn fake_release(dir: &Path) -> Result<Vec<ArchiveFile>> {
        let mut files = Vec::new();
        for (name, contents, executable) in [
            ("stint", "#!/bin/sh\necho stint\n", true),
            ("schemas/event.json", "{}\n", false),
            ("README.md", "# stint\n", false),
            ("schemas/attempt.json", "{}\n", false),
            ("LICENSE-MIT", "MIT\n", false),
        ] {
            let source = dir.join(name.replace('/', "_"));
            fs::write(&source, contents)?;
            files.push(ArchiveFile {
                name: name.to_owned(),
                source,
                executable,
            });
        }
        Ok(files)
    }

    /// A temp folder holding the archive `TOP.tar.gz` of [`fake_release`] under `TOP/`.
    fn fake_archive(top: &str) -> Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let tarball = dir.path().join(format!("{top}.tar.gz"));
        write_archive(&tarball, top, &fake_release(dir.path())?, 0)?;
        Ok((dir, tarball))
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = fake_release(dir.path())?;
        let first = dir.path().join("first.tar.gz");
        let second = dir.path().join("second.tar.gz");
        write_archive(&first, "stint-0.1.0-test", &files, 0)?;
        // Touch the sources and reverse their order: neither may change a byte.
        let mut reversed = fake_release(dir.path())?;
        reversed.reverse();
        write_archive(&second, "stint-0.1.0-test", &reversed, 0)?;
        assert_eq!(fs::read(&first)?, fs::read(&second)?);
        Ok(())
    }

    #[test]
    fn entries_are_sorted_with_fixed_owner_mode_and_time() -> Result<()> {
        let (_dir, tarball) = fake_archive("top")?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&tarball)?));
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let header = entry.header();
            assert_eq!((header.mtime()?, header.uid()?, header.gid()?), (0, 0, 0));
            assert_eq!(header.username().ok().flatten().unwrap_or_default(), "");
            seen.push((entry.path()?.display().to_string(), header.mode()?));
        }
        let expected = [
            ("top/", 0o755),
            ("top/LICENSE-MIT", 0o644),
            ("top/README.md", 0o644),
            ("top/schemas/", 0o755),
            ("top/schemas/attempt.json", 0o644),
            ("top/schemas/event.json", 0o644),
            ("top/stint", 0o755),
        ];
        let expected: Vec<(String, u32)> = expected
            .iter()
            .map(|(p, m)| ((*p).to_owned(), *m))
            .collect();
        assert_eq!(seen, expected);
        Ok(())
    }

    #[test]
    fn gzip_header_has_no_time_and_no_name() -> Result<()> {
        let (_dir, tarball) = fake_archive("top")?;
        let mut header = [0u8; 10];
        File::open(&tarball)?.read_exact(&mut header)?;
        assert_eq!(&header[..3], &[0x1f, 0x8b, 8], "not gzip");
        assert_eq!(header[3] & 0x08, 0, "FNAME flag set");
        assert_eq!(&header[4..8], &[0, 0, 0, 0], "mtime not zero");
        Ok(())
    }

    #[test]
    fn the_checksum_file_verifies_with_sha256sum() -> Result<()> {
        let (dir, tarball) = fake_archive("stint-0.1.0-test")?;
        let checksum = write_sha256(&tarball)?;
        let line = fs::read_to_string(&checksum)?;
        let digest = hex::encode(Sha256::digest(fs::read(&tarball)?));
        assert_eq!(line, format!("{digest}  stint-0.1.0-test.tar.gz\n"));
        let sh = project::shell_at(dir.path())?;
        if cmd!(sh, "sha256sum --version")
            .quiet()
            .ignore_stdout()
            .run()
            .is_ok()
        {
            let checksum_name = file_name(&checksum)?;
            cmd!(sh, "sha256sum -c {checksum_name}")
                .quiet()
                .ignore_stdout()
                .run()?;
        }
        Ok(())
    }
}
