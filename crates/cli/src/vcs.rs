//! Where the code stood when an attempt finished: the jj change id of `@` in a jj repository,
//! else the git commit (`+dirty` when tracked files changed, `+unknown` when `git status` failed
//! or timed out, so an unknown state is never recorded as clean), else nothing.
//!
//! A missing tool, a non-repository or a tool that hangs is never an error: the answer is `None`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use stint_ports::VcsProbe;
use tokio::process::Command;

/// The longest a VCS tool may take to answer.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The jj-then-git probe.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JjOrGit;

#[async_trait]
impl VcsProbe for JjOrGit {
    async fn revision(&self, dir: &Path) -> Option<String> {
        if let Some(change) = jj_change_id(dir).await {
            return Some(change);
        }
        git_commit(dir).await
    }
}

/// `jj log -r @ -T change_id`, without snapshotting the working copy (a probe must not write to
/// the repository; the change id of `@` does not change on snapshot).
async fn jj_change_id(dir: &Path) -> Option<String> {
    let args = [
        "--ignore-working-copy",
        "--no-pager",
        "--color=never",
        "log",
        "-r",
        "@",
        "--no-graph",
        "-T",
        "change_id",
    ];
    tool_output(dir, "jj", &args)
        .await
        .ok()
        .filter(|change| !change.is_empty())
}

/// The commit of `HEAD`, with `+dirty` when tracked files differ from it and `+unknown` when
/// that could not be found out. Untracked files do not count (as with `git describe --dirty`),
/// so stint's own `.stint/` folder never marks a tree dirty.
async fn git_commit(dir: &Path) -> Option<String> {
    let commit = tool_output(dir, "git", &["rev-parse", "HEAD"])
        .await
        .ok()
        .filter(|commit| !commit.is_empty())?;
    let status = tool_output(
        dir,
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .await;
    Some(match status {
        Ok(changes) if changes.is_empty() => commit,
        Ok(_) => format!("{commit}+dirty"),
        Err(reason) => {
            tracing::debug!(%reason, "git status failed; the tree's state is unknown");
            format!("{commit}+unknown")
        }
    })
}

/// The trimmed stdout of `program args` run in `dir` when it succeeds, or why it did not.
async fn tool_output(dir: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOOL_TIMEOUT, child)
        .await
        .map_err(|_| format!("{program} did not answer within {TOOL_TIMEOUT:?}"))?
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !output.status.success() {
        return Err(format!("{program} failed: {}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_directory_has_no_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(JjOrGit.revision(dir.path()).await, None);
    }

    #[tokio::test]
    async fn a_git_repository_reports_its_commit_and_dirtiness() {
        let dir = tempfile::tempdir().expect("temp dir");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        // Without git this test would pass having checked nothing: it fails instead, unless
        // skipping was asked for.
        if !git(&["init", "-q"]) {
            assert!(
                std::env::var("STINT_SKIP_GIT_TESTS").is_ok_and(|v| v == "1"),
                "git is not installed (or `git init` failed): install git, or set \
                 STINT_SKIP_GIT_TESTS=1 to skip this test"
            );
            return;
        }
        std::fs::write(dir.path().join("a"), "1").expect("write");
        assert!(git(&["add", "a"]));
        assert!(git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x"
        ]));
        let clean = JjOrGit.revision(dir.path()).await.expect("a commit");
        assert_eq!(clean.len(), 40, "{clean}");
        std::fs::write(dir.path().join("untracked"), "").expect("write");
        assert_eq!(JjOrGit.revision(dir.path()).await, Some(clean.clone()));
        std::fs::write(dir.path().join("a"), "2").expect("write");
        assert_eq!(
            JjOrGit.revision(dir.path()).await,
            Some(format!("{clean}+dirty"))
        );
        // A status git cannot give is not a clean tree.
        std::fs::write(dir.path().join(".git/index"), "garbage").expect("write");
        assert_eq!(
            JjOrGit.revision(dir.path()).await,
            Some(format!("{clean}+unknown"))
        );
    }
}
