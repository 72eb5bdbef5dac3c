//! Services from C (docs/design.md §5): `busbar_bus_start_service` starts a member of a
//! named, versioned service that answers discovery (`$SRV.PING`, `INFO`, `STATS`);
//! `busbar_service_endpoint_serve` adds an endpoint and answers its requests on the
//! calling thread with a C handler, through core's `Service::endpoint_jobs`: counting,
//! error replies and leaving the group after failures stay in core, and so does the rule
//! of one answer per request (`JobCell`).

use std::ffi::{c_char, c_void, CString};
use std::ptr;

use busbar_core::service::{JobCell, Service, ServiceConfig};
use busbar_core::{Bytes, Error};

use crate::args::{array_arg, handle, out, str_arg};
use crate::bus::busbar_bus;
use crate::error::busbar_status;
use crate::message::busbar_message;
use crate::runtime::block_on;

/// A running member of a service. Opaque; owned by the caller: stop it with
/// `busbar_service_stop`, free it with `busbar_service_free`.
pub struct busbar_service {
    inner: Service,
    id: CString,
}

/// One request to an endpoint, borrowed by a `busbar_endpoint_handler` for its call.
/// Answer it once, with `busbar_job_reply` or `busbar_job_fail`; a request left
/// unanswered when the handler returns gets an error reply (500, "the handler ended
/// without answering").
pub struct busbar_job {
    cell: JobCell,
    request: busbar_message,
}

/// Handles one request of `busbar_service_endpoint_serve`, on the thread that called it:
/// read it with `busbar_job_request`, answer it with `busbar_job_reply` or
/// `busbar_job_fail`. Its return value is not used.
pub type busbar_endpoint_handler =
    Option<unsafe extern "C" fn(userdata: *mut c_void, job: *mut busbar_job) -> busbar_status>;

/// Starts a member of the service `name` (letters, digits, `-`, `_`) at `version` on `bus`,
/// with `description` (NULL: none), in the queue group `q`; it answers discovery from now
/// on. Sets `*service`. `invalid_argument` for a bad name or version.
#[no_mangle]
pub extern "C" fn busbar_bus_start_service(
    bus: *const busbar_bus,
    name: *const c_char,
    version: *const c_char,
    description: *const c_char,
    service: *mut *mut busbar_service,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(service, ptr::null_mut(), "service")?;
        let bus = handle(bus, "bus")?;
        let mut config = ServiceConfig::new(str_arg(name, "name")?, str_arg(version, "version")?);
        if !description.is_null() {
            config = config.description(str_arg(description, "description")?);
        }
        let inner = block_on(Service::start(bus.bus.clone(), config))?;
        let id = CString::new(inner.id()).map_err(|_| Error::InvalidArgument("service id".into()))?;
        *slot = Box::into_raw(Box::new(busbar_service { inner, id }));
        Ok(())
    }
}

/// This member's id (unique per member of the service); borrowed from `service`. NULL for
/// a NULL service.
#[no_mangle]
pub extern "C" fn busbar_service_id(service: *const busbar_service) -> *const c_char {
    ffi_boundary!(@or ptr::null() => {
        handle(service, "service").map_or(ptr::null(), |s| s.id.as_ptr())
    })
}

/// Adds endpoint `name` on `subject` (a queue subscription in the service's group) and
/// answers its requests on the calling thread, one at a time, with `handler(userdata,
/// job)`, until the service is stopped (`busbar_service_stop` from another thread) or the
/// bus closed; then returns `BUSBAR_OK` and sets `*served` (if not NULL) to the number of
/// requests handled. `invalid_subject` for a bad subject.
#[no_mangle]
pub extern "C" fn busbar_service_endpoint_serve(
    service: *const busbar_service,
    name: *const c_char,
    subject: *const c_char,
    handler: busbar_endpoint_handler,
    userdata: *mut c_void,
    served: *mut u64,
) -> busbar_status {
    ffi_boundary! {
        // SAFETY: NULL or a pointer to writable storage for one u64 (header contract).
        let mut served = unsafe { served.as_mut() };
        if let Some(count) = served.as_deref_mut() {
            *count = 0;
        }
        let this = handle(service, "service")?;
        let handle_one = handler.ok_or_else(|| crate::args::null("handler"))?;
        let (name, subject) = (str_arg(name, "name")?, str_arg(subject, "subject")?);
        let mut jobs = block_on(this.inner.endpoint_jobs(name, subject))?;
        while let Some(job) = block_on(jobs.next()) {
            let mut job = busbar_job {
                request: busbar_message::new(job.request().clone()),
                cell: JobCell::from(job),
            };
            // SAFETY: the C caller's handler, with its userdata and a job borrowed for the call.
            unsafe { handle_one(userdata, &mut job) };
            if let Some(count) = served.as_deref_mut() {
                *count += 1;
            }
        }
        Ok(())
    }
}

/// The request of `job`, borrowed for the handler's call (`busbar_message_clone` keeps
/// it). NULL for a NULL job.
#[no_mangle]
pub extern "C" fn busbar_job_request(job: *const busbar_job) -> *const busbar_message {
    ffi_boundary!(@or ptr::null() => {
        handle(job, "job").map_or(ptr::null(), |j| &j.request as *const busbar_message)
    })
}

/// Answers `job` with the `len` bytes at `data` (NULL when `len` is 0).
/// `invalid_argument` when it has been answered already.
#[no_mangle]
pub extern "C" fn busbar_job_reply(job: *const busbar_job, data: *const u8, len: usize) -> busbar_status {
    ffi_boundary! {
        let job = handle(job, "job")?;
        let data = Bytes::copy_from_slice(array_arg(data, len, "data")?);
        job.cell.reply(data)
    }
}

/// Answers `job` with an error reply: headers `Nats-Service-Error` = `message` and
/// `Nats-Service-Error-Code` = `code` when it is from 100 to 999, else 500; the endpoint
/// counts the failure. `invalid_argument` when it has been answered already.
#[no_mangle]
pub extern "C" fn busbar_job_fail(
    job: *const busbar_job,
    message: *const c_char,
    code: i64,
) -> busbar_status {
    ffi_boundary! {
        let job = handle(job, "job")?;
        job.cell.fail(str_arg(message, "message")?.to_owned(), Some(code))
    }
}

/// Stops answering: discovery and every endpoint; each `busbar_service_endpoint_serve`
/// returns once its handler's current call has.
#[no_mangle]
pub extern "C" fn busbar_service_stop(service: *const busbar_service) -> busbar_status {
    ffi_boundary! {
        block_on(handle(service, "service")?.inner.stop());
        Ok(())
    }
}

/// Stops and frees `service` (NULL: nothing). No thread may be in
/// `busbar_service_endpoint_serve` with it: stop it, let those threads return, then free.
#[no_mangle]
pub extern "C" fn busbar_service_free(service: *mut busbar_service) {
    ffi_boundary!(@or () => {
        if service.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `busbar_bus_start_service`, freed once (header contract).
        let this = unsafe { Box::from_raw(service) };
        block_on(this.inner.stop());
    })
}
