//! Guest RAM as QEMU's RAM migration sees it, page by page over the working set.
//!
//! The working set sits at the start of guest RAM and holds data from the start (the
//! guest fills it before it dirties it); the rest of RAM is zero pages, never written.
//! Each working-set page carries a version the guest bumps on every write and the
//! version the destination last received, so a page the migration failed to resend is
//! visible ([`Ram::lost_pages`]).

use super::PAGE_SIZE;

/// Wire bytes of a page with data: QEMU's 8-byte header (offset and flags) and the page
/// (`save_normal_page`).
pub(super) const PAGE_WIRE: u64 = PAGE_SIZE + 8;
/// Wire bytes of a zero page: the header and one fill byte (`save_zero_page`).
pub(super) const ZERO_PAGE_WIRE: u64 = 9;

/// Guest RAM, its KVM dirty log and the migration bitmap.
#[derive(Debug)]
pub(super) struct Ram {
    /// Pages outside the working set (zero pages).
    zero_pages: u64,
    /// Per working-set page: writes so far (starts at 1: the page holds data).
    guest: Vec<u32>,
    /// Per working-set page: the version the destination holds.
    dest: Vec<u32>,
    /// The migration bitmap over the working set: pages still to send this pass.
    bitmap: Vec<bool>,
    /// Set bits in `bitmap`.
    dirty: u64,
    /// Zero pages still to send (only in the first, bulk pass).
    zero_left: u64,
    /// KVM's dirty log over the working set (pages written since the last sync).
    log: Vec<bool>,
    /// Whether dirty logging is on (a migration tracks dirty pages).
    logging: bool,
    /// The next working-set page the guest writes.
    writer: usize,
    /// Fraction of a page the guest wrote but did not finish.
    write_carry: f64,
    /// Where the sender scans: a working-set page, or `guest.len()` for the zero pages.
    cursor: usize,
    /// Bytes the sender may still send before it waits for more bandwidth.
    credit: f64,
    /// Bytes the guest wrote, all told (for dirty-rate measurements).
    written: f64,
}

impl Ram {
    /// RAM of `ram_bytes` whose first `wss_bytes` hold data.
    pub(super) fn new(ram_bytes: u64, wss_bytes: u64) -> Self {
        let total = ram_bytes / PAGE_SIZE;
        let wss = (wss_bytes.min(ram_bytes) / PAGE_SIZE) as usize;
        Ram {
            zero_pages: total.saturating_sub(wss as u64),
            guest: vec![1; wss],
            dest: vec![0; wss],
            bitmap: vec![false; wss],
            dirty: 0,
            zero_left: 0,
            log: vec![false; wss],
            logging: false,
            writer: 0,
            write_carry: 0.0,
            cursor: 0,
            credit: 0.0,
            written: 0.0,
        }
    }

    /// The working set, in bytes.
    pub(super) fn wss_bytes(&self) -> u64 {
        self.guest.len() as u64 * PAGE_SIZE
    }

    /// Bytes the guest wrote so far.
    pub(super) fn written(&self) -> f64 {
        self.written
    }

    /// The guest writes `bytes` into its working set, page after page, wrapping around.
    pub(super) fn write(&mut self, bytes: f64) {
        self.written += bytes;
        let wss = self.guest.len();
        if wss == 0 || bytes <= 0.0 {
            return;
        }
        let pages = bytes / PAGE_SIZE as f64 + self.write_carry;
        let whole = pages.floor();
        self.write_carry = pages - whole;
        let mut n = whole as u64;
        let rounds = n / wss as u64;
        if rounds > 0 {
            // Whole rounds touch every page alike.
            for (version, logged) in self.guest.iter_mut().zip(self.log.iter_mut()) {
                *version = version.wrapping_add(rounds as u32);
                *logged |= self.logging;
            }
            n %= wss as u64;
        }
        for _ in 0..n {
            let p = self.writer;
            self.guest[p] = self.guest[p].wrapping_add(1);
            self.log[p] |= self.logging;
            self.writer = (p + 1) % wss;
        }
    }

    /// Migration setup (`ram_init_bitmaps`): every page is to be sent and dirty logging
    /// starts with an empty log. The destination starts with nothing.
    pub(super) fn begin(&mut self) {
        self.bitmap.fill(true);
        self.dirty = self.bitmap.len() as u64;
        self.zero_left = self.zero_pages;
        self.log.fill(false);
        self.logging = true;
        self.dest.fill(0);
        self.cursor = 0;
        self.credit = 0.0;
    }

    /// A bitmap sync: the dirty log moves into the migration bitmap and is cleared.
    /// Returns the pages newly set in the bitmap (QEMU's `num_dirty_pages_period` share).
    pub(super) fn sync(&mut self) -> u64 {
        let mut new = 0;
        for (logged, queued) in self.log.iter_mut().zip(self.bitmap.iter_mut()) {
            if std::mem::take(logged) && !*queued {
                *queued = true;
                new += 1;
            }
        }
        self.dirty += new;
        new
    }

    /// Dirty logging stops (the migration ended).
    pub(super) fn stop_logging(&mut self) {
        self.logging = false;
        self.log.fill(false);
        self.credit = 0.0;
    }

    /// Whether the migration bitmap is empty (the pass ran dry).
    pub(super) fn is_empty(&self) -> bool {
        self.dirty == 0 && self.zero_left == 0
    }

    /// What QEMU reports as `ram.remaining`: pages in the bitmap, in bytes.
    pub(super) fn remaining_bytes(&self) -> u64 {
        (self.dirty + self.zero_left) * PAGE_SIZE
    }

    /// Wire bytes still to send for what is in the bitmap, less the sender's credit.
    pub(super) fn wire_to_empty(&self) -> f64 {
        (self.dirty * PAGE_WIRE + self.zero_left * ZERO_PAGE_WIRE) as f64 - self.credit
    }

    /// Sends pages from the bitmap with `budget` more bytes of bandwidth, scanning on from
    /// where the last pass stopped and wrapping around (QEMU's page search). Returns the
    /// wire bytes sent.
    pub(super) fn send(&mut self, budget: f64) -> u64 {
        self.credit += budget;
        let wss = self.guest.len();
        let mut sent = 0;
        while !self.is_empty() {
            if self.cursor >= wss {
                if self.zero_left > 0 {
                    let n = ((self.credit / ZERO_PAGE_WIRE as f64) as u64).min(self.zero_left);
                    self.zero_left -= n;
                    self.credit -= (n * ZERO_PAGE_WIRE) as f64;
                    sent += n * ZERO_PAGE_WIRE;
                    if self.zero_left > 0 {
                        break;
                    }
                }
                self.cursor = 0;
                continue;
            }
            if !self.bitmap[self.cursor] {
                self.cursor += 1;
                continue;
            }
            if self.credit < PAGE_WIRE as f64 {
                break;
            }
            let p = self.cursor;
            self.bitmap[p] = false;
            self.dirty -= 1;
            self.dest[p] = self.guest[p];
            self.credit -= PAGE_WIRE as f64;
            sent += PAGE_WIRE;
            self.cursor += 1;
        }
        sent
    }

    /// The sender has nothing to send: unused bandwidth is not banked.
    pub(super) fn idle(&mut self) {
        self.credit = 0.0;
    }

    /// Sends everything in the bitmap at once (the switchover, with the VM stopped).
    /// Returns the wire bytes.
    pub(super) fn send_all(&mut self) -> u64 {
        let mut sent = self.zero_left * ZERO_PAGE_WIRE;
        self.zero_left = 0;
        for ((queued, dest), guest) in self.bitmap.iter_mut().zip(self.dest.iter_mut()).zip(&self.guest) {
            if std::mem::take(queued) {
                *dest = *guest;
                sent += PAGE_WIRE;
            }
        }
        self.dirty = 0;
        sent
    }

    /// Wire bytes [`Ram::send_all`] would send.
    pub(super) fn wire_pending(&self) -> u64 {
        self.dirty * PAGE_WIRE + self.zero_left * ZERO_PAGE_WIRE
    }

    /// Working-set pages whose latest version the destination does not hold.
    pub(super) fn lost_pages(&self) -> u64 {
        self.guest.iter().zip(&self.dest).filter(|(g, d)| g != d).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_page_written_after_it_was_sent_is_lost_unless_a_sync_picks_it_up() {
        let mut ram = Ram::new(8 * MIB, 4 * MIB);
        ram.begin();
        ram.send(f64::MAX / 4.0);
        assert!(ram.is_empty());
        ram.write(PAGE_SIZE as f64 * 3.0);
        // Without a sync the bitmap does not know about the writes.
        ram.send_all();
        assert_eq!(ram.lost_pages(), 3);
        assert_eq!(ram.sync(), 3);
        ram.send_all();
        assert_eq!(ram.lost_pages(), 0);
    }

    #[test]
    fn zero_pages_cost_their_record_and_data_pages_their_size() {
        let mut ram = Ram::new(8 * MIB, 4 * MIB);
        ram.begin();
        assert_eq!(ram.remaining_bytes(), 8 * MIB);
        let pages = 4 * MIB / PAGE_SIZE;
        assert_eq!(ram.wire_pending(), pages * PAGE_WIRE + pages * ZERO_PAGE_WIRE);
        // Half the working set's worth of bandwidth sends half the working set.
        let sent = ram.send((pages / 2 * PAGE_WIRE) as f64);
        assert_eq!(sent, pages / 2 * PAGE_WIRE);
        assert_eq!(ram.remaining_bytes(), 6 * MIB);
    }

    #[test]
    fn writes_beyond_the_working_set_wrap_and_dirty_each_page_once() {
        let mut ram = Ram::new(8 * MIB, MIB);
        ram.begin();
        ram.send(f64::MAX / 4.0);
        ram.write(5.5 * MIB as f64);
        assert_eq!(ram.sync(), MIB / PAGE_SIZE);
        assert_eq!(ram.written(), 5.5 * MIB as f64);
    }
}
