//! What `check` reads through libvirt: the domain XML and libvirt's own calls, never a
//! QEMU command (that would mark the domain tainted, and `check` changes nothing).
//!
//! libvirt has no call for the migration capabilities QEMU supports nor for QEMU's
//! blockers; it turns on what a migration needs itself and refuses a blocked one when it
//! starts. Those stay empty here, and `check`'s rows say so for a libvirt plan.

use async_trait::async_trait;
use engine::driver::{DeviceSurvey, DriverError, Side, SideSurvey, Survey};
use virt::sys;

use super::{ffi, hostdev, lookup, xml, LibvirtDriver};

#[async_trait]
impl Survey for LibvirtDriver {
    async fn survey(&mut self, side: Side) -> Result<SideSurvey, DriverError> {
        let domain = match side {
            Side::Source => Some(self.source_domain("dumpxml")?),
            Side::Destination => self.destination_domain("dumpxml").await?,
        };
        // No domain on the destination yet: libvirt makes it from the source's XML.
        let Some(domain) = domain else {
            return Ok(SideSurvey::default());
        };
        let (text, speed_mib, downtime_ms, rss_kib) = self
            .call(side, "dumpxml", move || {
                let text = domain.xml_desc(0)?;
                let active = domain.is_active()?;
                let speed = domain.migrate_max_speed(0)?;
                let downtime = match active {
                    true => Some(ffi::max_downtime(&domain)?),
                    false => None,
                };
                let rss = match active {
                    true => domain
                        .memory_stats(0)?
                        .iter()
                        .find(|s| s.tag == sys::VIR_DOMAIN_MEMORY_STAT_RSS)
                        .map(|s| s.val),
                    false => None,
                };
                Ok((text, speed, downtime, rss))
            })
            .await?;
        let devices = hostdev::aliases(&text)
            .into_iter()
            .map(|alias| DeviceSurvey {
                host: hostdev::address_of(&text, &alias).map(|a| a.to_string()),
                migration_events: xml::override_property(&text, &alias, "migration-events")
                    .map(|v| v == "true")
                    .or(Some(false)),
                type_name: "vfio-pci".into(),
                id: alias,
                ..DeviceSurvey::default()
            })
            .collect();
        Ok(SideSurvey {
            machine: xml::machine(&text),
            capabilities: Vec::new(),
            max_bandwidth: Some(speed_mib.saturating_mul(1 << 20)),
            downtime_limit_ms: downtime_ms,
            viommu: xml::viommu(&text),
            blocked_reasons: Vec::new(),
            devices,
            resident_bytes: rss_kib.map(|kib| kib.saturating_mul(1024)),
        })
    }

    async fn connect_side(&mut self, side: Side) -> Result<(), DriverError> {
        match side {
            Side::Source => {
                let connection = self.open(side, &self.target.source_uri.clone()).await?;
                let id = self.target.domain.clone();
                let looked_up = connection.clone();
                let (domain, name) = self
                    .call(side, "lookup domain", move || {
                        let domain = lookup(&looked_up, &id)?;
                        let name = domain.name()?;
                        Ok((domain, name))
                    })
                    .await?;
                self.name = name;
                self.domain = Some(domain);
                self.source = Some(connection);
            }
            Side::Destination => {
                let connection = self.open(side, &self.target.destination_uri.clone()).await?;
                self.destination = Some(connection);
            }
        }
        Ok(())
    }
}
