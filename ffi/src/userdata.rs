//! A C callback with its `void *userdata` and an optional function that releases it.

use std::ffi::c_void;

use crate::error::busbar_status;
use crate::message::busbar_message;

/// Called with each item of a subscription in callback mode (see
/// `busbar_subscription_set_callback`).
///
/// Runs on a busbar runtime worker thread, never on the thread that registered it, and
/// never twice at once for one subscription. `status` is `BUSBAR_OK` with `message`
/// set: borrowed, valid only during the call (`busbar_message_clone` keeps a copy). Any
/// other `status` comes with `message` NULL and is a notice, not the end: chiefly
/// `BUSBAR_LAGGED` (messages were missed); `busbar_last_error()` on this thread, read
/// before any other busbar call, gives the details (how many). The callback may call
/// busbar (publish, respond, request, even free its own subscription).
pub type busbar_message_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, message: *const busbar_message, status: busbar_status),
>;

/// Releases a callback's `userdata` once no call will use it again. Called exactly once,
/// on a runtime worker thread or in `busbar_subscription_free`.
pub type busbar_userdata_drop = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A C caller's `userdata` and the function that releases it, called once when this is
/// dropped.
pub(crate) struct Userdata {
    ptr: *mut c_void,
    drop: busbar_userdata_drop,
}

// SAFETY: the header tells C callers that callbacks and the drop function run on runtime
// worker threads with this userdata, one call at a time; sharing it is their contract.
unsafe impl Send for Userdata {}

impl Userdata {
    pub(crate) fn new(ptr: *mut c_void, drop: busbar_userdata_drop) -> Self {
        Userdata { ptr, drop }
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for Userdata {
    fn drop(&mut self) {
        if let Some(release) = self.drop {
            // SAFETY: the C caller's own release function, called once with its userdata.
            unsafe { release(self.ptr) }
        }
    }
}

/// A registered message callback: owns its userdata and releases it when dropped.
pub(crate) struct Callback {
    call: unsafe extern "C" fn(*mut c_void, *const busbar_message, busbar_status),
    userdata: Userdata,
}

impl Callback {
    pub(crate) fn new(
        call: unsafe extern "C" fn(*mut c_void, *const busbar_message, busbar_status),
        userdata: *mut c_void,
        drop: busbar_userdata_drop,
    ) -> Self {
        Callback {
            call,
            userdata: Userdata::new(userdata, drop),
        }
    }

    pub(crate) fn call(&mut self, message: Option<&busbar_message>, status: busbar_status) {
        let message = message.map_or(std::ptr::null(), |m| m as *const busbar_message);
        // SAFETY: a C function pointer given to us for exactly this call shape.
        unsafe { (self.call)(self.userdata.ptr(), message, status) }
    }
}

/// A `void *userdata` with its optional release function, for callbacks that are not
/// subscription callbacks (the log callback): released once, when dropped.
pub(crate) struct UserData {
    userdata: *mut c_void,
    drop: busbar_userdata_drop,
}

// SAFETY: the header tells C callers that their callback and drop function may run on any
// thread with this userdata; sharing it is their contract.
unsafe impl Send for UserData {}
// SAFETY: as above; busbar only hands the pointer back, never reads through it.
unsafe impl Sync for UserData {}

impl UserData {
    pub(crate) fn new(userdata: *mut c_void, drop: busbar_userdata_drop) -> Self {
        UserData { userdata, drop }
    }

    pub(crate) fn get(&self) -> *mut c_void {
        self.userdata
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(release) = self.drop {
            // SAFETY: the C caller's own release function, called once with its userdata.
            unsafe { release(self.userdata) }
        }
    }
}
