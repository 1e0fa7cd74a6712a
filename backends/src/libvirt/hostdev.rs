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

/// Where the `<address .../>` inside `<source>` is in a hostdev element of this `type`
/// (`pci`, `mdev`): its start and end offsets.
fn source_address(element: &str, kind: &str) -> Option<(usize, usize)> {
    let open_tag = &element[..element.find('>').unwrap_or(element.len())];
    if attribute(open_tag, "type").as_deref() != Some(kind) {
        return None;
    }
    let source = element.find("<source")?;
    let address = element[source..].find("<address")? + source;
    let close = element[address..].find("/>")? + address + 2;
    Some((address, close))
}

/// Every PCI hostdev of a domain's XML.
fn hostdevs(xml: &str) -> Vec<Hostdev> {
    let mut found = Vec::new();
    for (start, element) in elements(xml) {
        let Some((address, close)) = source_address(element, "pci") else {
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

/// The UUID of the mediated device the hostdev with this alias passes through
/// (`<hostdev type='mdev'><source><address uuid='...'/>`), in lower case.
pub fn mdev_of(xml: &str, alias: &str) -> Option<String> {
    mdevs(xml)
        .into_iter()
        .find(|(a, _, _)| a.as_deref() == Some(alias))
        .map(|(_, uuid, _)| uuid)
}

/// Every mediated device the domain passes through, by UUID.
pub fn mdev_uuids(xml: &str) -> Vec<String> {
    mdevs(xml).into_iter().map(|(_, uuid, _)| uuid).collect()
}

/// Each mdev hostdev: its alias, UUID and the byte range of its `<address uuid=.../>`.
fn mdevs(xml: &str) -> Vec<(Option<String>, String, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    for (start, element) in elements(xml) {
        let Some((address, close)) = source_address(element, "mdev") else {
            continue;
        };
        let Some(uuid) = attribute(&element[address..close], "uuid") else {
            continue;
        };
        found.push((
            alias_of(element),
            uuid.to_ascii_lowercase(),
            start + address..start + close,
        ));
    }
    found
}

/// A mediated device's type and UUID from its node device XML
/// (`<capability type='mdev'><type id='nvidia-63'/><uuid>...</uuid>`).
pub fn nodedev_mdev(xml: &str) -> Option<(String, String)> {
    let capability = &xml[xml.find("<capability type='mdev'")?..];
    let type_tag = &capability[capability.find("<type")?..];
    let kind = attribute(&type_tag[..type_tag.find("/>")?], "id")?;
    let uuid = capability.find("<uuid>")? + "<uuid>".len();
    let end = capability[uuid..].find("</uuid>")? + uuid;
    Some((kind, capability[uuid..end].trim().to_ascii_lowercase()))
}

/// Where a moved hostdev goes on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Another PCI device.
    Pci(PciAddress),
    /// Another mediated device, by UUID.
    Mdev(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pci(address) => address.fmt(f),
            Target::Mdev(uuid) => write!(f, "mediated device {uuid}"),
        }
    }
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
/// An alias with no hostdev of the target's kind is an error naming it.
pub fn retarget(xml: &str, moves: &[(String, Target)]) -> Result<String, String> {
    let pci = hostdevs(xml);
    let mdev = mdevs(xml);
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (alias, to) in moves {
        let (range, element) = match to {
            Target::Pci(address) => pci
                .iter()
                .find(|h| h.alias.as_deref() == Some(alias.as_str()))
                .map(|h| (h.source_address.clone(), address.element()))
                .ok_or_else(|| format!("the domain XML has no PCI <hostdev> with alias {alias}"))?,
            Target::Mdev(uuid) => mdev
                .iter()
                .find(|(a, _, _)| a.as_deref() == Some(alias.as_str()))
                .map(|(_, _, range)| (range.clone(), format!("<address uuid='{uuid}'/>")))
                .ok_or_else(|| format!("the domain XML has no mdev <hostdev> with alias {alias}"))?,
        };
        edits.push((range, element));
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
                ("hostdev0".into(), Target::Pci(pci("0000:5e:00.3"))),
                ("ua-gpu0".into(), Target::Pci(pci("0001:af:10.7"))),
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
        let refused = retarget(DOMAIN, &[("hostdev9".into(), Target::Pci(pci("0000:5e:00.3")))]);
        assert_eq!(
            refused,
            Err("the domain XML has no PCI <hostdev> with alias hostdev9".to_string())
        );
    }

    #[test]
    fn a_vgpu_moves_to_another_mediated_device_by_uuid() {
        assert_eq!(
            mdev_of(DOMAIN, "hostdev2").as_deref(),
            Some("c2177883-f1bb-47f0-914d-32a22e3a8804")
        );
        assert_eq!(
            mdev_uuids(DOMAIN),
            vec!["c2177883-f1bb-47f0-914d-32a22e3a8804".to_string()]
        );
        let uuid = "4b20d080-1b54-4048-85b3-a6a62d165c01".to_string();
        let moved =
            retarget(DOMAIN, &[("hostdev2".into(), Target::Mdev(uuid.clone()))]).expect("an mdev hostdev");
        assert_eq!(mdev_of(&moved, "hostdev2"), Some(uuid.clone()));
        assert_eq!(
            address_of(&moved, "hostdev0"),
            Some(pci("0000:3b:00.1")),
            "the PCI hostdevs stay"
        );
        assert_eq!(
            retarget(DOMAIN, &[("hostdev0".into(), Target::Mdev(uuid))]),
            Err("the domain XML has no mdev <hostdev> with alias hostdev0".to_string())
        );
    }

    #[test]
    fn a_mediated_device_s_type_and_uuid_are_read_from_its_node_device_xml() {
        let xml = "<device>\n  <name>mdev_4b20d080_1b54_4048_85b3_a6a62d165c01_0000_06_00_0</name>\n  <parent>pci_0000_06_00_0</parent>\n  <driver>\n    <name>vfio_mdev</name>\n  </driver>\n  <capability type='mdev'>\n    <type id='nvidia-63'/>\n    <uuid>4B20D080-1B54-4048-85B3-A6A62D165C01</uuid>\n    <iommuGroup number='12'/>\n  </capability>\n</device>";
        assert_eq!(
            nodedev_mdev(xml),
            Some((
                "nvidia-63".to_string(),
                "4b20d080-1b54-4048-85b3-a6a62d165c01".to_string()
            ))
        );
        assert_eq!(nodedev_mdev("<device><capability type='pci'/></device>"), None);
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
