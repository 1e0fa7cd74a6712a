//! `[libvirt]`: how libvirt migrates a plan whose sides are libvirt domains.

use std::ops::Range;

use toml::de::DeTable;

use crate::model::LibvirtOptions;
use crate::reader::{Mistakes, TableReader};

pub(super) fn read_libvirt(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<LibvirtOptions> {
    let r = TableReader::new("libvirt", t, s, &["peer_to_peer", "persist", "undefine_source"]);
    let d = LibvirtOptions::default();
    let peer_to_peer = r.boolean(m, "peer_to_peer");
    let persist = r.boolean(m, "persist");
    let undefine_source = r.boolean(m, "undefine_source");
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    Some(LibvirtOptions {
        peer_to_peer: peer_to_peer.map_or(d.peer_to_peer, |p| p.value),
        persist: persist.map_or(d.persist, |p| p.value),
        undefine_source: undefine_source.map_or(d.undefine_source, |u| u.value),
    })
}
