//! The libvirt calls the `virt` crate leaves unwrapped, or wraps unsoundly, wrapped once.
//!
//! - `Domain::job_stats()` builds a `Vec` from the pointer libvirt returns, which is NULL
//!   when no job runs (undefined behaviour), and frees libvirt's memory with Rust's
//!   allocator: [`job_stats`] copies the typed parameters out and frees them with
//!   `virTypedParamsFree`.
//! - There is no safe `virDomainAbortJob` ([`abort_job`]), `virDomainStartDirtyRateCalc`
//!   ([`start_dirty_rate_calc`]) or `virConnectDomainQemuMonitorEventRegister`
//!   ([`MonitorEvents`]), and nothing runs libvirt's event loop ([`start_event_loop`]).
//!
//! Every `unsafe` block of the libvirt backend is in this file, each with the reason it
//! is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_longlong, c_uint, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

/// One typed parameter's value, as libvirt typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    /// `VIR_TYPED_PARAM_INT` and `_LLONG`.
    Int(i64),
    /// `VIR_TYPED_PARAM_UINT` and `_ULLONG`.
    UInt(u64),
    /// `VIR_TYPED_PARAM_DOUBLE`.
    Double(f64),
    /// `VIR_TYPED_PARAM_BOOLEAN`.
    Bool(bool),
    /// `VIR_TYPED_PARAM_STRING`.
    Text(String),
}

impl Typed {
    /// The value as an unsigned number, when it is a non-negative number.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Typed::UInt(v) => Some(*v),
            Typed::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
}

/// A job's statistics: libvirt's job type and its typed parameters by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    /// `virDomainJobType`: 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed, 5
    /// cancelled.
    pub kind: i32,
    /// The parameters (`memory_remaining`, `memory_iteration`, `errmsg`, ...).
    pub fields: BTreeMap<String, Typed>,
}

/// `virDomainGetJobStats`: the running job's statistics, or with `completed` the last
/// finished job's (`VIR_DOMAIN_JOB_STATS_COMPLETED`). No job is `kind` 0 and no fields.
pub fn job_stats(domain: &Domain, completed: bool) -> Result<JobStats, Error> {
    let mut kind: c_int = 0;
    let mut params: sys::virTypedParameterPtr = ptr::null_mut();
    let mut count: c_int = 0;
    let flags = if completed {
        sys::VIR_DOMAIN_JOB_STATS_COMPLETED
    } else {
        0
    };
    // SAFETY: `domain.as_ptr()` is a live domain reference owned by `domain`; the out
    // pointers are valid locals. libvirt allocates `params` (or leaves it NULL).
    let rc = unsafe {
        sys::virDomainGetJobStats(
            domain.as_ptr(),
            &mut kind,
            &mut params,
            &mut count,
            flags as c_uint,
        )
    };
    if rc < 0 {
        return Err(Error::last_error());
    }
    let mut stats = JobStats {
        kind,
        fields: BTreeMap::new(),
    };
    // SAFETY: `params` and `count` are what libvirt returned.
    stats.fields = unsafe { read_params(params, count) };
    if !params.is_null() {
        // SAFETY: `params` and `count` are what libvirt returned; nothing refers to
        // them any more (strings were copied).
        unsafe { sys::virTypedParamsFree(params, count) };
    }
    Ok(stats)
}

/// Copies `count` typed parameters at `params` into a map.
///
/// # Safety
/// `params` is NULL or points at `count` initialised parameters that stay valid for the
/// call, as libvirt returns them.
unsafe fn read_params(params: sys::virTypedParameterPtr, count: c_int) -> BTreeMap<String, Typed> {
    let mut fields = BTreeMap::new();
    if params.is_null() || count <= 0 {
        return fields;
    }
    // SAFETY: the caller's promise; each `field` is NUL-terminated within its
    // fixed-size array, and a string value is a NUL-terminated C string.
    let slice = unsafe { std::slice::from_raw_parts(params, count as usize) };
    for param in slice {
        // SAFETY: see above.
        let name = unsafe { CStr::from_ptr(param.field.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the union member read is the one `type_` names.
        let value = unsafe {
            match param.type_ as u32 {
                sys::VIR_TYPED_PARAM_INT => Some(Typed::Int(i64::from(param.value.i))),
                sys::VIR_TYPED_PARAM_UINT => Some(Typed::UInt(u64::from(param.value.ui))),
                sys::VIR_TYPED_PARAM_LLONG => Some(Typed::Int(param.value.l)),
                sys::VIR_TYPED_PARAM_ULLONG => Some(Typed::UInt(param.value.ul)),
                sys::VIR_TYPED_PARAM_DOUBLE => Some(Typed::Double(param.value.d)),
                sys::VIR_TYPED_PARAM_BOOLEAN => Some(Typed::Bool(param.value.b != 0)),
                sys::VIR_TYPED_PARAM_STRING if !param.value.s.is_null() => Some(Typed::Text(
                    CStr::from_ptr(param.value.s).to_string_lossy().into_owned(),
                )),
                _ => None,
            }
        };
        if let Some(value) = value {
            fields.insert(name, value);
        }
    }
    fields
}

/// `virDomainListGetStats` for one domain and the `VIR_DOMAIN_STATS_*` groups in
/// `groups` (the crate's `all_domain_stats` leaks its records and lists every domain).
pub fn domain_stats(domain: &Domain, groups: u32) -> Result<BTreeMap<String, Typed>, Error> {
    // SAFETY: the pointer is only used while `domain` holds its reference.
    let mut domains = [unsafe { domain.as_ptr() }, ptr::null_mut()];
    let mut records: *mut sys::virDomainStatsRecordPtr = ptr::null_mut();
    // SAFETY: `domains` is a NULL-terminated array of one live domain reference; libvirt
    // allocates `records` (freed below).
    let count =
        unsafe { sys::virDomainListGetStats(domains.as_mut_ptr(), groups as c_uint, &mut records, 0) };
    if count < 0 {
        return Err(Error::last_error());
    }
    let mut fields = BTreeMap::new();
    if !records.is_null() {
        if count > 0 {
            // SAFETY: libvirt returned `count` records; the first is this domain's,
            // with `nparams` parameters at `params`.
            fields = unsafe {
                let record = *records;
                read_params((*record).params, (*record).nparams)
            };
        }
        // SAFETY: `records` is the NULL-terminated list libvirt returned.
        unsafe { sys::virDomainStatsRecordListFree(records) };
    }
    Ok(fields)
}

/// `virDomainGetState`: the state and reason codes (`virDomainState`, and the reason
/// enum of that state). The crate's `Domain::state` ignores a failure.
pub fn domain_state(domain: &Domain) -> Result<(i32, i32), Error> {
    let mut state: c_int = -1;
    let mut reason: c_int = -1;
    // SAFETY: `domain.as_ptr()` is a live domain reference; the out pointers are locals.
    let rc = unsafe { sys::virDomainGetState(domain.as_ptr(), &mut state, &mut reason, 0) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok((state, reason))
}

/// `virDomainMigrateGetMaxDowntime`: the downtime limit QEMU has now, in ms.
pub fn max_downtime(domain: &Domain) -> Result<u64, Error> {
    let mut ms: std::ffi::c_ulonglong = 0;
    // SAFETY: `domain.as_ptr()` is a live domain reference; `ms` is a local.
    let rc = unsafe { sys::virDomainMigrateGetMaxDowntime(domain.as_ptr(), &mut ms, 0) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(ms)
}

/// `virDomainAbortJob`: cancels the domain's running job (a migration: the source keeps
/// the guest).
pub fn abort_job(domain: &Domain) -> Result<(), Error> {
    // SAFETY: `domain.as_ptr()` is a live domain reference owned by `domain`.
    let rc = unsafe { sys::virDomainAbortJob(domain.as_ptr()) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// `virDomainStartDirtyRateCalc` for `seconds` with `mode_flags` (the
/// `VIR_DOMAIN_DIRTYRATE_MODE_*` flag).
pub fn start_dirty_rate_calc(domain: &Domain, seconds: i32, mode_flags: u32) -> Result<(), Error> {
    // SAFETY: `domain.as_ptr()` is a live domain reference owned by `domain`.
    let rc =
        unsafe { sys::virDomainStartDirtyRateCalc(domain.as_ptr(), seconds as c_int, mode_flags as c_uint) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

static EVENT_LOOP: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers libvirt's default event loop and runs it on a thread of its own, once per
/// process. Must run before the connections whose events are wanted are opened: libvirt
/// only delivers events on connections opened after an event loop exists.
pub fn start_event_loop() -> Result<(), String> {
    EVENT_LOOP
        .get_or_init(|| {
            virt::event::event_register_default_impl().map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .clone()
}

/// One QEMU monitor event libvirt relayed.
#[derive(Debug, Clone)]
pub struct MonitorEvent {
    /// The domain's name.
    pub domain: String,
    /// The event's name (`MIGRATION`, `VFIO_MIGRATION`, ...).
    pub name: String,
    /// The event's `data` member as JSON text, when it had one.
    pub details: Option<String>,
}

type Deliver = Box<dyn Fn(MonitorEvent) + Send + Sync>;

/// A registration for every QEMU monitor event of one connection's domains; deregistered
/// when dropped.
pub struct MonitorEvents {
    connection: Connect,
    id: c_int,
}

// SAFETY: the registration is an id on a connection; `Connect` is Send and Sync
// (libvirt connections are thread-safe), and deregistering takes only the id.
unsafe impl Send for MonitorEvents {}
// SAFETY: as above; no method takes `&self` for anything but reading the id.
unsafe impl Sync for MonitorEvents {}

unsafe extern "C" fn on_monitor_event(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: *const c_char,
    _seconds: c_longlong,
    _micros: c_uint,
    details: *const c_char,
    opaque: *mut c_void,
) {
    if opaque.is_null() || event.is_null() {
        return;
    }
    // SAFETY: `opaque` is the `Box<Deliver>` registered below and freed only by
    // `free_deliver`, after the last callback; `event` and `details` are NUL-terminated
    // strings libvirt owns for the call's duration; `dom` is valid during the call.
    let (deliver, name, details, domain) = unsafe {
        let deliver = &*(opaque as *const Deliver);
        let name = CStr::from_ptr(event).to_string_lossy().into_owned();
        let details = (!details.is_null()).then(|| CStr::from_ptr(details).to_string_lossy().into_owned());
        let domain_name = sys::virDomainGetName(dom);
        let domain = match domain_name.is_null() {
            true => String::new(),
            false => CStr::from_ptr(domain_name).to_string_lossy().into_owned(),
        };
        (deliver, name, details, domain)
    };
    deliver(MonitorEvent {
        domain,
        name,
        details,
    });
}

unsafe extern "C" fn free_deliver(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: `opaque` came from `Box::into_raw` in `MonitorEvents::register`, and
        // libvirt calls this once, after the last callback.
        drop(unsafe { Box::from_raw(opaque as *mut Deliver) });
    }
}

impl MonitorEvents {
    /// Delivers every QEMU monitor event of `connection`'s domains to `deliver`, on
    /// libvirt's event-loop thread ([`start_event_loop`] must have run before the
    /// connection was opened).
    pub fn register(
        connection: &Connect,
        deliver: impl Fn(MonitorEvent) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let boxed: Box<Deliver> = Box::new(Box::new(deliver));
        let opaque = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: the connection pointer is live (owned by `connection`); a NULL domain
        // and event name ask for every event of every domain; `opaque` is freed by
        // `free_deliver`, which libvirt calls on deregistration (or here on failure).
        let id = unsafe {
            sys::virConnectDomainQemuMonitorEventRegister(
                connection.as_ptr(),
                ptr::null_mut(),
                ptr::null(),
                Some(on_monitor_event),
                opaque,
                Some(free_deliver),
                0,
            )
        };
        if id < 0 {
            let error = Error::last_error();
            // SAFETY: registration failed, so libvirt did not take `opaque`.
            unsafe { free_deliver(opaque) };
            return Err(error);
        }
        // A second reference to the connection, so that it outlives the registration.
        // SAFETY: `virConnectRef` on a live connection; `Connect::from_ptr` takes over
        // that reference and releases it on drop.
        let connection = unsafe {
            sys::virConnectRef(connection.as_ptr());
            Connect::from_ptr(connection.as_ptr())
        };
        Ok(MonitorEvents { connection, id })
    }
}

impl Drop for MonitorEvents {
    fn drop(&mut self) {
        // SAFETY: the connection is live (this struct holds a reference) and `id` is
        // the registration's; libvirt then frees the callback's data.
        unsafe {
            sys::virConnectDomainQemuMonitorEventDeregister(self.connection.as_ptr(), self.id);
        }
    }
}
