//! The one tokio runtime of the library, created on first use and shared by every handle.

use std::future::Future;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Builder, Handle, Runtime, RuntimeFlavor};

/// Two workers: they run subscription callbacks and NATS I/O; C threads blocked in a
/// busbar call drive their own call.
pub(crate) static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("busbar-runtime")
        .enable_all()
        .build()
        .expect("busbar could not start its tokio runtime")
});

/// Runs `fut` to completion on the calling thread.
///
/// Most calls (a publish into memory, a message already buffered) finish on their first
/// poll, so that poll happens right here, inside the runtime's context, with a waker that
/// does nothing: no thread parking is set up for them. A call that has to wait is then
/// driven properly (a future re-registers its waker on every poll):
/// a C thread blocks on the shared runtime; a runtime worker (a callback calling back
/// into busbar, or a Rust host's multi-thread runtime) first hands its other tasks to
/// another worker (`block_in_place`), so it never stalls its runtime; a thread inside a
/// current-thread runtime (a Rust host) runs the call on a helper thread, because it
/// cannot block in place.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = pin!(fut);
    {
        let _context = RUNTIME.enter();
        if let Poll::Ready(output) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return output;
        }
    }
    match Handle::try_current() {
        Err(_) => RUNTIME.block_on(fut),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| RUNTIME.handle().block_on(fut))
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| RUNTIME.block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

/// [`block_on`] for at most `timeout_ms` (0: one poll; `BUSBAR_WAIT_FOREVER`: no limit);
/// `None` when the time ran out first.
pub(crate) fn block_on_for<F>(timeout_ms: u64, fut: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    match crate::args::timeout_arg(timeout_ms) {
        None => Some(block_on(fut)),
        Some(limit) => block_on(async { tokio::time::timeout(limit, fut).await }).ok(),
    }
}
