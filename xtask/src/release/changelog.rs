//! CHANGELOG.md sections: `## [X.Y.Z] - YYYY-MM-DD`, newest first, built from commit subjects.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use super::Version;

/// The changelog, relative to the workspace root.
pub(super) const FILE: &str = "CHANGELOG.md";
const UNRELEASED: &str = "## [Unreleased]";
const PREAMBLE: &str = "# Changelog\n\nAll notable changes to stint are documented in this file.\n";
/// Groups in the order they are printed, each with the first words of the subjects it takes.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Added",
        &[
            "add",
            "adds",
            "added",
            "implement",
            "implements",
            "introduce",
            "introduces",
            "new",
        ],
    ),
    ("Fixed", &["fix", "fixes", "fixed"]),
    (
        "Removed",
        &[
            "remove", "removes", "removed", "delete", "deletes", "drop", "drops",
        ],
    ),
];
const OTHER_GROUP: &str = "Changed";

/// Whether `changelog` has a section for `version`.
pub(super) fn has_section(changelog: &str, version: Version) -> bool {
    let heading = format!("## [{version}]");
    changelog
        .lines()
        .any(|line| line == heading || line.starts_with(&format!("{heading} ")))
}

/// `changelog` (or a new one if `None`) with the section of `version` added above the previous
/// release. Notes under `## [Unreleased]` move into the new section, above the commit list.
pub(super) fn insert_release(
    changelog: Option<&str>,
    version: Version,
    date: &str,
    subjects: &[String],
) -> Result<String> {
    let text = changelog.unwrap_or(PREAMBLE);
    if has_section(text, version) {
        bail!("{FILE} already has a section for {version}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let is_release = |line: &&str| line.starts_with("## ") && !line.starts_with(UNRELEASED);
    let unreleased = lines.iter().position(|line| line.starts_with(UNRELEASED));
    let next = lines.iter().position(is_release).unwrap_or(lines.len());
    let (before, notes) = match unreleased {
        Some(start) if start < next => (&lines[..=start], &lines[start + 1..next]),
        _ => (&lines[..next], &lines[next..next]),
    };
    let mut out = trimmed_block(before);
    out.push_str("\n\n");
    out.push_str(&section(version, date, &trimmed_block(notes), subjects));
    let rest = trimmed_block(&lines[next..]);
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(&rest);
        out.push('\n');
    }
    Ok(out)
}

/// One release section, ending in a newline.
fn section(version: Version, date: &str, notes: &str, subjects: &[String]) -> String {
    let mut out = format!("## [{version}] - {date}\n");
    if !notes.is_empty() {
        out.push_str(&format!("\n{notes}\n"));
    }
    let mut any = false;
    for group in GROUPS.iter().map(|(name, _)| *name).chain([OTHER_GROUP]) {
        let items: Vec<&String> = subjects
            .iter()
            .filter(|subject| group_of(subject) == group)
            .collect();
        if items.is_empty() {
            continue;
        }
        any = true;
        out.push_str(&format!("\n### {group}\n\n"));
        items
            .iter()
            .for_each(|subject| out.push_str(&format!("- {}\n", subject.trim())));
    }
    if !any && notes.is_empty() {
        out.push_str("\nNo changes since the previous release.\n");
    }
    out
}

fn group_of(subject: &str) -> &'static str {
    let first = subject
        .split(|c: char| !c.is_alphanumeric())
        .find(|word| !word.is_empty())
        .unwrap_or_default();
    let first = first.to_lowercase();
    GROUPS
        .iter()
        .find(|(_, words)| words.contains(&first.as_str()))
        .map_or(OTHER_GROUP, |(name, _)| name)
}

/// Lines joined without leading or trailing blank lines.
fn trimmed_block(lines: &[&str]) -> String {
    lines.join("\n").trim_matches('\n').trim_end().to_owned()
}

/// Today's date in UTC as `YYYY-MM-DD`.
pub(super) fn today_utc() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    civil_date(seconds / 86_400)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
