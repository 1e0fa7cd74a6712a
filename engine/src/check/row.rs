//! One finding of `vfio-migrate check`: what was checked, how it came out, what was
//! compared, and how to fix it.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Pass,
    /// The migration can go ahead, but an operator should know (and may act).
    Warn,
    /// The migration would fail, never converge, or lose data: not ready.
    Fail,
}

impl Status {
    /// The word the human table shows.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result. `id` is stable and dotted (`source.reachable`,
/// `device.gpu0.driver`, `host.iommu.dirty_tracking`) so that scripts can match on it;
/// `finding` is one line with the values compared; `hint` says how to fix a `warn` or
/// `fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Stable, dotted identifier.
    pub id: String,
    /// How it came out.
    pub status: Status,
    /// What was found, with the values compared.
    pub finding: String,
    /// How to fix it; empty for a `pass`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hint: String,
}

impl Row {
    /// A check that passed.
    pub fn pass(id: impl Into<String>, finding: impl Into<String>) -> Row {
        Row {
            id: id.into(),
            status: Status::Pass,
            finding: finding.into(),
            hint: String::new(),
        }
    }

    /// A finding an operator should know about.
    pub fn warn(id: impl Into<String>, finding: impl Into<String>, hint: impl Into<String>) -> Row {
        Row {
            id: id.into(),
            status: Status::Warn,
            finding: finding.into(),
            hint: hint.into(),
        }
    }

    /// A reason the migration cannot go ahead.
    pub fn fail(id: impl Into<String>, finding: impl Into<String>, hint: impl Into<String>) -> Row {
        Row {
            id: id.into(),
            status: Status::Fail,
            finding: finding.into(),
            hint: hint.into(),
        }
    }
}

/// What the rows add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Ready,
    /// No check failed; some warn.
    ReadyWithWarnings,
    /// At least one check failed.
    NotReady,
}

impl Verdict {
    /// The verdict of a set of rows.
    pub fn of(rows: &[Row]) -> Verdict {
        match rows.iter().map(|r| r.status).max() {
            Some(Status::Fail) => Verdict::NotReady,
            Some(Status::Warn) => Verdict::ReadyWithWarnings,
            _ => Verdict::Ready,
        }
    }

    /// Whether a migration may go ahead.
    pub fn is_ready(self) -> bool {
        self != Verdict::NotReady
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failing_row_makes_the_hosts_not_ready_whatever_else_passes() {
        let rows = vec![
            Row::pass("a", "fine"),
            Row::warn("b", "hmm", "look"),
            Row::fail("c", "broken", "fix"),
        ];
        assert_eq!(Verdict::of(&rows), Verdict::NotReady);
        assert_eq!(Verdict::of(&rows[..2]), Verdict::ReadyWithWarnings);
        assert!(Verdict::of(&rows[..2]).is_ready());
        assert_eq!(Verdict::of(&rows[..1]), Verdict::Ready);
    }

    #[test]
    fn rows_serialise_with_lowercase_statuses_and_no_empty_hint() {
        let json = serde_json::to_value(Row::pass("source.reachable", "answers")).expect("a row serialises");
        assert_eq!(
            json,
            serde_json::json!({"id": "source.reachable", "status": "pass", "finding": "answers"})
        );
    }
}
