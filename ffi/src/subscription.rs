//! `busbar_subscription`: pull with `busbar_subscription_next`, or push to a C callback.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use busbar_core::{Error, Result, Subscription, SubscriptionHandle};
use tokio::task::JoinHandle;

use crate::args::{handle, out};
use crate::error::{busbar_status, set_last_error};
use crate::message::busbar_message;
use crate::runtime::{block_on, block_on_for, RUNTIME};
use crate::userdata::{busbar_message_callback, busbar_userdata_drop, Callback};

/// A subscription. Opaque; owned by the caller, free with `busbar_subscription_free`.
/// `busbar_subscription_unsubscribe` and `_drain` may be called from any thread, also
/// while another thread waits in `busbar_subscription_next`.
pub struct busbar_subscription {
    control: SubscriptionHandle,
    mode: Mutex<Mode>,
}

enum Mode {
    /// Items are taken with `busbar_subscription_next`.
    Pull(Subscription),
    /// A runtime task hands every item to a C callback (`None` only while it starts).
    Callback(Option<JoinHandle<()>>),
}

thread_local! {
    /// The subscription whose callback this runtime thread is running, if any.
    static IN_CALLBACK: Cell<*const busbar_subscription> = const { Cell::new(ptr::null()) };
}

impl busbar_subscription {
    pub(crate) fn boxed(sub: Subscription) -> *mut busbar_subscription {
        Box::into_raw(Box::new(busbar_subscription {
            control: sub.handle(),
            mode: Mutex::new(Mode::Pull(sub)),
        }))
    }

    fn mode(&self) -> MutexGuard<'_, Mode> {
        self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sub_ref<'a>(sub: *mut busbar_subscription) -> Result<&'a busbar_subscription> {
    handle(sub.cast_const(), "subscription")
}

/// Waits up to `timeout_ms` (0: do not wait; `BUSBAR_WAIT_FOREVER`: no limit) for the
/// next message and sets `*message`. Owned: free `*message` with `busbar_message_free`.
///
/// Returns `BUSBAR_TIMEOUT` when none came in time; `BUSBAR_LAGGED` (with `*message`
/// NULL) when messages were missed, then goes on with the next call; `BUSBAR_CLOSED`
/// once the subscription has ended (unsubscribed, drained, or its bus closed).
/// `invalid_argument` for a subscription in callback mode. One thread at a time receives;
/// others wait for it.
#[no_mangle]
pub extern "C" fn busbar_subscription_next(
    subscription: *mut busbar_subscription,
    timeout_ms: u64,
    message: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(message, ptr::null_mut(), "message")?;
        let this = sub_ref(subscription)?;
        let mut mode = this.mode();
        let Mode::Pull(sub) = &mut *mode else {
            return Err(Error::InvalidArgument(
                "the subscription delivers to a callback; busbar_subscription_next cannot take from it".into(),
            ));
        };
        let item = block_on_for(timeout_ms, sub.next()).ok_or_else(|| Error::Timeout {
            subject: sub.pattern().to_owned(),
            timeout: Duration::from_millis(timeout_ms),
        })?;
        let msg = item.ok_or(Error::Closed("subscription"))??;
        *slot = busbar_message::boxed(msg);
        Ok(())
    }
}

/// Switches the subscription to callback mode: from now on every message (including any
/// already buffered) goes to `callback(userdata, message, status)` on a runtime worker
/// thread, never two at once; see `busbar_message_callback`. When the subscription ends
/// (unsubscribed, drained, freed or its bus closed) `drop(userdata)` is called once, if
/// `drop` is not NULL. `userdata` is not touched by busbar otherwise; it must stay valid
/// until `drop` (or, without one, until `busbar_subscription_free` returns).
/// `invalid_argument` when a callback is already set.
#[no_mangle]
pub extern "C" fn busbar_subscription_set_callback(
    subscription: *mut busbar_subscription,
    callback: busbar_message_callback,
    userdata: *mut c_void,
    drop: busbar_userdata_drop,
) -> busbar_status {
    ffi_boundary! {
        let this = sub_ref(subscription)?;
        let call = callback.ok_or_else(|| crate::args::null("callback"))?;
        let mut mode = this.mode();
        if matches!(*mode, Mode::Callback(_)) {
            return Err(Error::InvalidArgument("the subscription already has a callback".into()));
        }
        let callback = Callback::new(call, userdata, drop);
        if let Mode::Pull(sub) = std::mem::replace(&mut *mode, Mode::Callback(None)) {
            let me = this as *const busbar_subscription as usize;
            *mode = Mode::Callback(Some(RUNTIME.spawn(deliver(sub, callback, me))));
        }
        Ok(())
    }
}

/// Hands every item of `sub` to `callback` until the subscription ends, then drops it
/// (which calls the C drop function). `me` identifies the subscription handle.
async fn deliver(mut sub: Subscription, mut callback: Callback, me: usize) {
    while let Some(item) = sub.next().await {
        let (message, status) = match item {
            Ok(msg) => (Some(busbar_message::new(msg)), busbar_status::BUSBAR_OK),
            Err(err) => {
                set_last_error(&err);
                (None, busbar_status::from_error(&err))
            }
        };
        IN_CALLBACK.with(|c| c.set(me as *const busbar_subscription));
        callback.call(message.as_ref(), status);
        IN_CALLBACK.with(|c| c.set(ptr::null()));
    }
}

/// Stops delivery at once: buffered messages are discarded, `busbar_subscription_next`
/// returns `BUSBAR_CLOSED`, a callback gets no further call.
#[no_mangle]
pub extern "C" fn busbar_subscription_unsubscribe(subscription: *mut busbar_subscription) -> busbar_status {
    ffi_boundary! { block_on(sub_ref(subscription)?.control.unsubscribe()) }
}

/// Stops new deliveries; what is buffered is still received, then the subscription ends.
#[no_mangle]
pub extern "C" fn busbar_subscription_drain(subscription: *mut busbar_subscription) -> busbar_status {
    ffi_boundary! { block_on(sub_ref(subscription)?.control.drain()) }
}

/// Handles one request of `busbar_subscription_serve`: `request` is borrowed for the call
/// (`busbar_message_clone` keeps it); answer it with `busbar_message_respond` or
/// `busbar_message_respond_with`. Runs on the thread that called serve.
pub type busbar_serve_handler =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *const busbar_message) -> busbar_status>;

/// A responder loop (Rust's `busbar::serve`): hands every message of the subscription to
/// `handler(userdata, request)` on the calling thread, one at a time, until the
/// subscription ends (`busbar_subscription_unsubscribe` or `_drain` from another thread,
/// or the bus closed); then returns `BUSBAR_OK` and sets `*served` (if not NULL) to the
/// number of messages handled. No single message stops it: lag notices and undecodable
/// messages are skipped (counted in `busbar_subscription_stats`), and a handler returning
/// an error leaves that request unanswered. `invalid_argument` for a subscription in
/// callback mode.
#[no_mangle]
pub extern "C" fn busbar_subscription_serve(
    subscription: *mut busbar_subscription,
    handler: busbar_serve_handler,
    userdata: *mut c_void,
    served: *mut u64,
) -> busbar_status {
    ffi_boundary! {
        // SAFETY: NULL or a pointer to writable storage for one u64 (header contract).
        let mut served = unsafe { served.as_mut() };
        if let Some(count) = served.as_deref_mut() {
            *count = 0;
        }
        let this = sub_ref(subscription)?;
        let handle_one = handler.ok_or_else(|| crate::args::null("handler"))?;
        let mut mode = this.mode();
        let Mode::Pull(sub) = &mut *mode else {
            return Err(Error::InvalidArgument(
                "the subscription delivers to a callback; busbar_subscription_serve cannot take from it".into(),
            ));
        };
        while let Some(item) = block_on(sub.next()) {
            // Notices (lag, undecodable input) are counted on the subscription; serving goes on.
            let Ok(request) = item else { continue };
            let request = busbar_message::new(request);
            // SAFETY: the C caller's handler, with its userdata and a borrowed message.
            unsafe { handle_one(userdata, &request) };
            if let Some(count) = served.as_deref_mut() {
                *count += 1;
            }
        }
        Ok(())
    }
}

/// Counters of a subscription, set by `busbar_subscription_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_subscription_counters {
    /// Items queued to this subscription (undecodable messages included).
    pub delivered: u64,
    /// Messages it missed because its buffer was full; each gap is also a `BUSBAR_LAGGED`
    /// item, in its place.
    pub missed: u64,
    /// Messages waiting in its buffer now.
    pub pending: u64,
    /// Bytes (payloads and headers) waiting in its buffer now.
    pub pending_bytes: u64,
    /// Messages that arrived but could not be decoded (each a `BUSBAR_DECODE` item).
    pub undecodable: u64,
    /// Whether it has missed a message since it last caught up.
    pub lagging: bool,
}

/// Sets `*stats` to the subscription's counters. May be called from any thread, also
/// while another waits in `busbar_subscription_next` or runs its callback.
#[no_mangle]
pub extern "C" fn busbar_subscription_stats(
    subscription: *const busbar_subscription,
    stats: *mut busbar_subscription_counters,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(stats, busbar_subscription_counters::default(), "stats")?;
        let s = handle(subscription, "subscription")?.control.stats();
        *slot = busbar_subscription_counters {
            delivered: s.delivered,
            missed: s.missed,
            pending: s.pending,
            pending_bytes: s.pending_bytes,
            undecodable: s.undecodable,
            lagging: s.lagging,
        };
        Ok(())
    }
}

/// Unsubscribes and frees the subscription. `NULL` does nothing. In callback mode it
/// returns after the callback's last call and its drop function have run; called from
/// the subscription's own callback, it returns at once and they follow. No other thread
/// may be using the handle: to stop a thread waiting in `busbar_subscription_next`, call
/// `busbar_subscription_unsubscribe`, let that thread return, then free.
#[no_mangle]
pub extern "C" fn busbar_subscription_free(subscription: *mut busbar_subscription) {
    ffi_boundary!(@or () => {
        if subscription.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `busbar_subscription::boxed`, freed once (header contract).
        let this = unsafe { Box::from_raw(subscription) };
        let _ = block_on(this.control.unsubscribe());
        let mode = this.mode.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Mode::Callback(Some(task)) = mode {
            let own = IN_CALLBACK.with(|c| c.get()) == subscription.cast_const();
            if !own {
                let _ = block_on(task);
            }
        }
    })
}
