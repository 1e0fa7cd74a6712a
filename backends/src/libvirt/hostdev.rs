//! PCI hostdevs in libvirt's domain XML: which host device a hostdev alias passes
//! through, and the same XML with that device swapped for the destination host's.
//!
//! The destination host's device is rarely at the source's address (another VF, another
//! GPU): a plan's `destination_host` names it, and the domain XML sent with the migration
//! (`VIR_MIGRATE_PARAM_DEST_XML`) carries it in the hostdev's `<source>`. libvirt writes its
//! XML in one canonical form, which these functions read as text.

use std::fmt;

use super::xml::attribute_in as attribute;

/// A PCI address, `DDDD:BB:SS.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Slot (device).
    pub slot: u8,
    /// Function.
    pub function: u8,
}

impl PciAddress {
    /// Reads `0000:5e:00.3` (as sysfs and plans write it).
    pub fn parse(text: &str) -> Option<Self> {
        let (domain, rest) = text.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        Some(PciAddress {
            domain: u16::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            slot: u8::from_str_radix(slot, 16).ok()?,
            function: u8::from_str_radix(function, 16).ok()?,
        })
    }

    /// libvirt's node device name for it, `pci_0000_5e_00_3`.
    pub fn nodedev_name(&self) -> String {
        format!(
            "pci_{:04x}_{:02x}_{:02x}_{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }

    /// The `<address .../>` element libvirt writes inside a hostdev's `<source>`.
    fn element(&self) -> String {
        format!(
            "<address domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>",
            self.domain, self.bus, self.slot, self.function
        )
    }

    /// Reads the attributes of an `<address .../>` element.
    fn from_element(element: &str) -> Option<Self> {
        let number = |name: &str| {
            let text = attribute(element, name)?;
            let digits = text.strip_prefix("0x").unwrap_or(&text);
            u32::from_str_radix(digits, 16).ok()
        };
        Some(PciAddress {
            domain: u16::try_from(number("domain")?).ok()?,
            bus: u8::try_from(number("bus")?).ok()?,
            slot: u8::try_from(number("slot")?).ok()?,
            function: u8::try_from(number("function")?).ok()?,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// One `<hostdev type='pci'>` element: where it sits in the XML, its alias and the host
/// device its `<source>` names.
struct Hostdev {
    /// Byte range of the `<address .../>` element inside `<source>`.
    source_address: std::ops::Range<usize>,
    alias: Option<String>,
    address: PciAddress,
}

/// Each `<hostdev ...>...</hostdev>` element of a domain's XML, with its offset.
fn elements(xml: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = xml[from..].find("<hostdev").map(|i| i + from) {
        let Some(end) = xml[start..].find("</hostdev>").map(|i| i + start) else {
            break;
        };
        from = end;
        found.push((start, &xml[start..end]));
    }
    found
}

/// The `name` of an element's `<alias .../>`.
fn alias_of(element: &str) -> Option<String> {
    let at = element.find("<alias")?;
    let end = element[at..].find("/>")? + at;
    attribute(&element[at..end], "name")
}

/// Every PCI hostdev of a domain's XML.
fn hostdevs(xml: &str) -> Vec<Hostdev> {
    let mut found = Vec::new();
    for (start, element) in elements(xml) {
        let open_tag = &element[..element.find('>').unwrap_or(element.len())];
        if attribute(open_tag, "type").as_deref() != Some("pci") {
            continue;
        }
        let Some(source) = element.find("<source") else {
            continue;
        };
        let Some(address) = element[source..].find("<address").map(|i| i + source) else {
            continue;
        };
        let Some(close) = element[address..].find("/>").map(|i| i + address + 2) else {
            continue;
        };
        let Some(pci) = PciAddress::from_element(&element[address..close]) else {
            continue;
        };
        found.push(Hostdev {
            source_address: start + address..start + close,
            alias: alias_of(element),
            address: pci,
        });
    }
    found
}

/// The aliases of every hostdev (PCI or mediated), in the XML's order.
pub fn aliases(xml: &str) -> Vec<String> {
    elements(xml)
        .into_iter()
        .filter_map(|(_, e)| alias_of(e))
        .collect()
}

/// The host device the hostdev with this alias passes through.
pub fn address_of(xml: &str, alias: &str) -> Option<PciAddress> {
    hostdevs(xml)
        .into_iter()
        .find(|h| h.alias.as_deref() == Some(alias))
        .map(|h| h.address)
}

/// Every host device the domain passes through.
pub fn addresses(xml: &str) -> Vec<PciAddress> {
    hostdevs(xml).into_iter().map(|h| h.address).collect()
}

/// The XML with the hostdev of each alias passing through its new host device instead.
/// An alias with no PCI hostdev is an error naming it.
pub fn retarget(xml: &str, moves: &[(String, PciAddress)]) -> Result<String, String> {
    let found = hostdevs(xml);
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (alias, to) in moves {
        let hostdev = found
            .iter()
            .find(|h| h.alias.as_deref() == Some(alias.as_str()))
            .ok_or_else(|| format!("the domain XML has no PCI <hostdev> with alias {alias}"))?;
        edits.push((hostdev.source_address.clone(), to.element()));
    }
    // From the end, so that earlier ranges stay valid.
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = xml.to_string();
    for (range, element) in edits {
        out.replace_range(range, &element);
    }
    Ok(out)
}

/// The driver a node device is bound to (`<driver><name>vfio-pci</name>`), from its XML.
pub fn nodedev_driver(xml: &str) -> Option<String> {
    let driver = xml.find("<driver>")?;
    let name = xml[driver..].find("<name>")? + driver + "<name>".len();
    let end = xml[name..].find("</name>")? + name;
    Some(xml[name..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "<domain type='kvm'>
  <name>render-03</name>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <driver name='vfio' model='mlx5_vfio_pci'/>
      <source>
        <address domain='0x0000' bus='0x3b' slot='0x00' function='0x1'/>
      </source>
      <alias name='hostdev0'/>
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x86' slot='0x00' function='0x0'/>
      </source>
      <alias name='ua-gpu0'/>
      <address type='pci' domain='0x0000' bus='0x08' slot='0x00' function='0x0'/>
    </hostdev>
    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
      <source><address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source>
      <alias name='hostdev2'/>
    </hostdev>
  </devices>
</domain>";

    fn pci(text: &str) -> PciAddress {
        PciAddress::parse(text).expect("a PCI address")
    }

    #[test]
    fn a_hostdev_alias_names_the_host_device_it_passes_through() {
        assert_eq!(address_of(DOMAIN, "hostdev0"), Some(pci("0000:3b:00.1")));
        assert_eq!(address_of(DOMAIN, "ua-gpu0"), Some(pci("0000:86:00.0")));
        assert_eq!(address_of(DOMAIN, "hostdev2"), None, "an mdev has no PCI source");
        assert_eq!(addresses(DOMAIN), vec![pci("0000:3b:00.1"), pci("0000:86:00.0")]);
    }

    #[test]
    fn every_hostdev_with_an_alias_is_listed_mediated_ones_too() {
        assert_eq!(aliases(DOMAIN), vec!["hostdev0", "ua-gpu0", "hostdev2"]);
        assert!(aliases("<domain><devices/></domain>").is_empty());
    }

    #[test]
    fn retargeting_changes_only_the_source_address_of_the_named_hostdevs() {
        let moved = retarget(
            DOMAIN,
            &[
                ("hostdev0".into(), pci("0000:5e:00.3")),
                ("ua-gpu0".into(), pci("0001:af:10.7")),
            ],
        )
        .expect("both aliases exist");
        assert_eq!(address_of(&moved, "hostdev0"), Some(pci("0000:5e:00.3")));
        assert_eq!(address_of(&moved, "ua-gpu0"), Some(pci("0001:af:10.7")));
        // The guest-side PCI addresses stay: the guest sees its devices where they were.
        assert!(moved.contains("<address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>"));
        assert!(moved.contains("<address type='pci' domain='0x0000' bus='0x08' slot='0x00' function='0x0'/>"));
        assert_eq!(moved.len(), DOMAIN.len());
    }

    #[test]
    fn retargeting_an_alias_the_domain_does_not_have_is_refused() {
        let refused = retarget(DOMAIN, &[("hostdev9".into(), pci("0000:5e:00.3"))]);
        assert_eq!(
            refused,
            Err("the domain XML has no PCI <hostdev> with alias hostdev9".to_string())
        );
    }

    #[test]
    fn addresses_read_and_print_as_sysfs_writes_them() {
        let a = pci("0000:5E:00.3");
        assert_eq!(a.to_string(), "0000:5e:00.3");
        assert_eq!(a.nodedev_name(), "pci_0000_5e_00_3");
        assert_eq!(PciAddress::parse("5e:00.3"), None);
    }

    #[test]
    fn a_node_device_s_driver_is_read_from_its_xml() {
        let xml = "<device>\n  <name>pci_0000_5e_00_3</name>\n  <path>/sys/devices/pci0000:5d/0000:5e:00.3</path>\n  <driver>\n    <name>mlx5_vfio_pci</name>\n  </driver>\n  <capability type='pci'/>\n</device>";
        assert_eq!(nodedev_driver(xml).as_deref(), Some("mlx5_vfio_pci"));
        assert_eq!(
            nodedev_driver("<device><name>pci_0000_00_01_0</name></device>"),
            None
        );
    }
}
