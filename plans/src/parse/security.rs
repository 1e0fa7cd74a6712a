//! `[security]`: the guards a plan lowers on purpose.

use std::ops::Range;

use toml::de::DeTable;

use crate::model::Security;
use crate::reader::{Mistakes, TableReader};

pub(super) fn read_security(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Security> {
    let r = TableReader::new("security", t, s, &["remote_qmp"]);
    let d = Security::default();
    let remote_qmp = r.boolean(m, "remote_qmp");
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    Some(Security {
        remote_qmp: remote_qmp.map_or(d.remote_qmp, |a| a.value),
    })
}
