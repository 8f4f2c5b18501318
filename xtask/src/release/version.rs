//! Release versions: `MAJOR.MINOR.PATCH`, compared numerically.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// A release version. Pre-release and build suffixes are not used by stint's releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// The version after `self` for `level`: `major`, `minor`, `patch` or an explicit `X.Y.Z`,
    /// refused unless it is greater than `self`.
    pub(crate) fn next(self, level: &str) -> Result<Version> {
        let next = match level {
            "major" => Version {
                major: self.major + 1,
                minor: 0,
                patch: 0,
            },
            "minor" => Version {
                minor: self.minor + 1,
                patch: 0,
                ..self
            },
            "patch" => Version {
                patch: self.patch + 1,
                ..self
            },
            explicit => explicit.parse()?,
        };
        if next <= self {
            bail!("version {next} is not greater than the current version {self}");
        }
        Ok(next)
    }
}

impl FromStr for Version {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Version> {
        let bad = || format!("`{text}` is not major, minor, patch or a version like 1.2.3");
        let mut parts = text
            .trim()
            .strip_prefix('v')
            .unwrap_or(text.trim())
            .split('.');
        let mut number = || -> Result<u64> {
            let part = parts.next().with_context(bad)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                bail!(bad());
            }
            part.parse().with_context(bad)
        };
        let version = Version {
            major: number()?,
            minor: number()?,
            patch: number()?,
        };
        if parts.next().is_some() {
            bail!(bad());
        }
        Ok(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
