//! The exit codes, in one table: `--help`, the man page, the README and the report all
//! take them from here.

/// Documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: migrated.
    Migrated = 0,
    /// 1: not migrated (aborted by policy or failed), VM running on the source.
    NotMigrated = 1,
    /// 2: invalid plan or usage.
    InvalidPlan = 2,
    /// 3: hosts not ready (preflight or check).
    NotReady = 3,
    /// 4: the VM needs attention (where it runs could not be confirmed).
    NeedsAttention = 4,
    /// 130: interrupted by the operator; migration cancelled, VM on the source.
    Interrupted = 130,
}

impl ExitStatus {
    /// Every exit code, in order.
    pub const ALL: [ExitStatus; 6] = [
        ExitStatus::Migrated,
        ExitStatus::NotMigrated,
        ExitStatus::InvalidPlan,
        ExitStatus::NotReady,
        ExitStatus::NeedsAttention,
        ExitStatus::Interrupted,
    ];

    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the code tells the operator.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Migrated => "migrated: the VM runs on the destination",
            ExitStatus::NotMigrated => {
                "not migrated (aborted by policy or failed); the VM runs on the source"
            }
            ExitStatus::InvalidPlan => "invalid plan or usage",
            ExitStatus::NotReady => "hosts not ready (preflight); nothing was changed",
            ExitStatus::NeedsAttention => "the VM needs attention: where it runs could not be confirmed",
            ExitStatus::Interrupted => {
                "interrupted (SIGINT, SIGTERM): migration cancelled, the VM runs on the source"
            }
        }
    }

    /// The table as README.md and docs/report.md show it (a test keeps them in step).
    pub fn markdown_table() -> String {
        let mut out = String::from("| code | meaning |\n|------|---------|\n");
        for status in Self::ALL {
            out.push_str(&format!("| {} | {} |\n", status.code(), status.meaning()));
        }
        out
    }

    /// The table as `--help` prints it.
    pub fn help_table() -> String {
        let mut out = String::from("Exit codes:");
        for status in Self::ALL {
            out.push_str(&format!("\n  {:<4} {}", status.code(), status.meaning()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_table_lists_every_code_once() {
        let table = ExitStatus::help_table();
        for status in ExitStatus::ALL {
            let line = format!("  {:<4} {}", status.code(), status.meaning());
            assert_eq!(table.matches(&line).count(), 1, "{table}");
        }
    }
}
