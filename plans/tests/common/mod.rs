//! What the plan tests share.

/// The smallest valid plan; tests add the tables they are about after it.
pub const BASE: &str = r#"[vm]
name = "db-01"

[source]
qmp = "unix:/run/src.qmp"

[destination]
qmp = "unix:/run/dst.qmp"
listen = "tcp:127.0.0.1:49152"
"#;
