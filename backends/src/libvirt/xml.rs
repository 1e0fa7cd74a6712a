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

fn attribute_in(tag: &str, attribute: &str) -> Option<String> {
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
    fn a_ring_turned_off_is_no_ring() {
        let xml = "<domain type='kvm'><features><kvm><dirty-ring state='off'/></kvm></features></domain>";
        assert_eq!(dirty_ring_size(xml), None);
    }
}
