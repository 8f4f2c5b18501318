//! The table: one row per figure, written as Markdown.

use std::fmt::Write as _;

/// Whether a figure reached its target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// At or beyond the target.
    Met,
    /// Short of the target.
    Below,
    /// Repetitions on both sides of the target: the run cannot tell.
    Inconclusive,
    /// A figure without a target of its own.
    Info,
    /// Not measured, with the reason.
    Skipped(String),
}

impl Verdict {
    /// `Met` when `ok`, else `Below`.
    pub(crate) fn from_check(ok: bool) -> Self {
        if ok { Self::Met } else { Self::Below }
    }

    /// The verdict on a ratio that must be at least `target`, from every paired repetition's
    /// ratio: `Met` when all reach it, `Below` when none does, `Inconclusive` when the range
    /// crosses it (a ratio of medians of 0.92 with pairs 0.73..1.04 is no "met").
    pub(crate) fn from_paired(ratios: &[f64], target: f64) -> Self {
        if ratios.is_empty() {
            Self::Skipped("no repetitions".to_owned())
        } else if ratios.iter().all(|&r| r >= target) {
            Self::Met
        } else if ratios.iter().all(|&r| r < target) {
            Self::Below
        } else {
            Self::Inconclusive
        }
    }

    fn cell(&self) -> String {
        match self {
            Self::Met => "met".to_owned(),
            Self::Below => "**below target**".to_owned(),
            Self::Inconclusive => "inconclusive (paired ratios on both sides)".to_owned(),
            Self::Info => String::new(),
            Self::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The benchmark number (1 to 5).
    pub bench: u8,
    /// What is measured, with its unit.
    pub measure: String,
    /// Backend or variant.
    pub setting: String,
    /// Through stint: `median (min..max)`.
    pub stint: String,
    /// The same-SQL floor, when there is one.
    pub floor: String,
    /// stint / floor, when there is a floor.
    pub ratio: String,
    /// The target, when there is one.
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    /// A row without floor, ratio or target.
    pub(crate) fn info(bench: u8, measure: &str, setting: &str, stint: String) -> Self {
        Self {
            bench,
            measure: measure.to_owned(),
            setting: setting.to_owned(),
            stint,
            floor: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A row that could not be measured.
    pub(crate) fn skipped(bench: u8, measure: &str, setting: &str, why: &str) -> Self {
        Self {
            verdict: Verdict::Skipped(why.to_owned()),
            ..Self::info(bench, measure, setting, "n/a".to_owned())
        }
    }

    /// The same row with a target and its verdict.
    pub(crate) fn with_target(mut self, target: &str, met: bool) -> Self {
        self.target = target.to_owned();
        self.verdict = Verdict::from_check(met);
        self
    }
}

/// The rows as one Markdown table.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| # | measure | backend / variant | stint: median (min..max) | same-SQL floor: median (min..max) | stint / floor | target | verdict |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.bench,
            row.measure,
            row.setting,
            row.stint,
            row.floor,
            row.ratio,
            row.target,
            row.verdict.cell()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn a_paired_range_across_the_target_is_inconclusive() {
        // The ratio of medians here is about 0.92, which alone would read "met".
        let ratios = [0.73, 0.92, 0.95, 1.04, 0.90];
        assert_eq!(Verdict::from_paired(&ratios, 0.9), Verdict::Inconclusive);
        assert_eq!(Verdict::from_paired(&[0.91, 1.2], 0.9), Verdict::Met);
        assert_eq!(Verdict::from_paired(&[0.5, 0.89], 0.9), Verdict::Below);
        assert!(matches!(
            Verdict::from_paired(&[], 0.9),
            Verdict::Skipped(_)
        ));
    }
}
