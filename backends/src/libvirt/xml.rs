//! The few facts read from a domain's XML: the accelerator and the KVM dirty ring.
//!
//! libvirt writes its XML in one canonical form (`virDomainGetXMLDesc`), so these read
//! that form's attributes directly rather than pulling in an XML parser for two facts.

/// Whether the domain runs under KVM (`<domain type='kvm'>`), else TCG (`'qemu'`).
pub fn is_kvm(xml: &str) -> bool {
    element_attribute(xml, "domain", "type").as_deref() == Some("kvm")
}

/// The KVM dirty ring's size when it is on (`<dirty-ring state='on' size='4096'/>`).
pub fn dirty_ring_size(xml: &str) -> Option<u64> {
    if element_attribute(xml, "dirty-ring", "state").as_deref() != Some("on") {
        return None;
    }
    Some(
        element_attribute(xml, "dirty-ring", "size")
            .and_then(|size| size.parse().ok())
            .unwrap_or(1),
    )
}

/// The machine type QEMU runs (`<type arch='x86_64' machine='pc-q35-10.0'>hvm</type>`).
pub fn machine(xml: &str) -> Option<String> {
    let os = &xml[xml.find("<os")?..];
    element_attribute(os, "type", "machine")
}

/// Guest-visible IOMMUs, by QEMU's device names (`<iommu model='intel'/>`).
pub fn viommu(xml: &str) -> Vec<String> {
    let Some(model) = element_attribute(xml, "iommu", "model") else {
        return Vec::new();
    };
    vec![match model.as_str() {
        "intel" => "intel-iommu".into(),
        "virtio" => "virtio-iommu-pci".into(),
        "smmuv3" => "arm-smmuv3".into(),
        "amd" => "amd-iommu".into(),
        other => other.to_string(),
    }]
}

/// A device property a `<qemu:override>` sets for the device with this alias:
/// `<qemu:device alias='hostdev0'><qemu:frontend><qemu:property name='migration-events'
/// type='bool' value='true'/>`.
pub fn override_property(xml: &str, alias: &str, property: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(start) = rest.find("<qemu:device") {
        let tag_end = rest[start..].find('>')? + start;
        let end = rest[start..]
            .find("</qemu:device>")
            .map_or(rest.len(), |e| e + start);
        if attribute_in(&rest[start..tag_end], "alias").as_deref() == Some(alias) {
            let mut body = &rest[tag_end..end];
            while let Some(p) = body.find("<qemu:property") {
                let close = body[p..].find("/>").map_or(body.len(), |c| c + p);
                let tag = &body[p..close];
                if attribute_in(tag, "name").as_deref() == Some(property) {
                    return attribute_in(tag, "value");
                }
                body = &body[close..];
            }
        }
        rest = &rest[end..];
    }
    None
}

/// The value of `attribute` on the first `<element ...>` in `xml`.
fn element_attribute(xml: &str, element: &str, attribute: &str) -> Option<String> {
    let open = format!("<{element}");
    let mut rest = xml;
    loop {
        let start = rest.find(&open)?;
        let after = &rest[start + open.len()..];
        // `<domain` must not match `<domainname`: the name ends at a space, `>` or `/`.
        if after.starts_with([' ', '\n', '\t', '>', '/']) {
            let tag = &after[..after.find('>')?];
            return attribute_in(tag, attribute);
        }
        rest = after;
    }
}

/// The value of `attribute='...'` (or `"..."`) in a tag.
pub(super) fn attribute_in(tag: &str, attribute: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {attribute}={quote}");
        if let Some(start) = tag.find(&key) {
            let value = &tag[start + key.len()..];
            return value.find(quote).map(|end| value[..end].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KVM_WITH_RING: &str = "<domain type='kvm' id='1'>\n  <name>vm</name>\n  <features>\n    <kvm>\n      <dirty-ring state='on' size='4096'/>\n    </kvm>\n  </features>\n</domain>";

    #[test]
    fn a_kvm_domain_with_the_dirty_ring_on_says_so() {
        assert!(is_kvm(KVM_WITH_RING));
        assert_eq!(dirty_ring_size(KVM_WITH_RING), Some(4096));
    }

    #[test]
    fn a_tcg_domain_without_a_ring_says_neither() {
        let xml = "<domain type=\"qemu\">\n  <name>vm</name>\n</domain>";
        assert!(!is_kvm(xml));
        assert_eq!(dirty_ring_size(xml), None);
    }

    #[test]
    fn the_machine_type_the_iommu_and_an_override_are_read_from_the_xml() {
        let xml = "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n  <os>\n    <type arch='x86_64' machine='pc-q35-10.0'>hvm</type>\n  </os>\n  <devices>\n    <iommu model='intel'/>\n  </devices>\n  <qemu:override>\n    <qemu:device alias='nic0'>\n      <qemu:frontend>\n        <qemu:property name='x-other' type='string' value='x'/>\n      </qemu:frontend>\n    </qemu:device>\n    <qemu:device alias='hostdev0'>\n      <qemu:frontend>\n        <qemu:property name='migration-events' type='bool' value='true'/>\n      </qemu:frontend>\n    </qemu:device>\n  </qemu:override>\n</domain>";
        assert_eq!(machine(xml).as_deref(), Some("pc-q35-10.0"));
        assert_eq!(viommu(xml), vec!["intel-iommu".to_string()]);
        assert_eq!(
            override_property(xml, "hostdev0", "migration-events").as_deref(),
            Some("true")
        );
        assert_eq!(override_property(xml, "nic0", "migration-events"), None);
        assert_eq!(override_property(xml, "gpu9", "migration-events"), None);
        assert!(viommu(KVM_WITH_RING).is_empty());
    }

    #[test]
    fn a_ring_turned_off_is_no_ring() {
        let xml = "<domain type='kvm'><features><kvm><dirty-ring state='off'/></kvm></features></domain>";
        assert_eq!(dirty_ring_size(xml), None);
    }
}
