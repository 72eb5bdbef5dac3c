//! What the C ABI adds to a publish into the in-memory bus, side by side in one run:
//!
//! - `rust/shared`: core's `publish(subject, Bytes)` awaited in Rust, the payload a
//!   shared `Bytes` (a reference count, no copy): the reference.
//! - `rust/copied`: the same with the payload copied from a `&[u8]` on each call, the
//!   copy a C caller's borrowed buffer needs.
//! - `c_abi`: `busbar_bus_publish(bus, subject, data, len, NULL, 0)` called in libbusbar.so
//!   exactly as a C program calls it (dynamic symbol, C calling convention): argument
//!   checks, the copy, the panic boundary and a `block_on` per call.
//!
//! Each runs with no subscriber and with one subscriber that drains on another thread.
//!
//!     cargo build --release -p busbar-ffi && cargo bench -p busbar-ffi --bench publish

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;
use std::sync::Arc;

use busbar_core::{Bytes, Config, EventBus};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The few declarations of include/busbar.h this benchmark needs.
#[allow(non_camel_case_types)]
mod c {
    use super::*;
    pub(crate) enum busbar_bus {}
    pub(crate) enum busbar_subscription {}
    pub(crate) enum busbar_message {}
    pub(crate) type Callback = unsafe extern "C" fn(*mut c_void, *const busbar_message, c_int);
    pub(crate) const OK: c_int = 0;

    /// libbusbar.so's functions, looked up with dlopen/dlsym: a call through one of these
    /// pointers is what a C program's call through its PLT entry is.
    pub(crate) struct Lib {
        pub connect_json: unsafe extern "C" fn(*const c_char, *mut *mut busbar_bus) -> c_int,
        pub publish: unsafe extern "C" fn(
            *const busbar_bus,
            *const c_char,
            *const u8,
            usize,
            *const c_void,
            usize,
        ) -> c_int,
        pub subscribe:
            unsafe extern "C" fn(*const busbar_bus, *const c_char, *mut *mut busbar_subscription) -> c_int,
        pub set_callback: unsafe extern "C" fn(
            *mut busbar_subscription,
            Option<Callback>,
            *mut c_void,
            Option<unsafe extern "C" fn(*mut c_void)>,
        ) -> c_int,
        pub subscription_free: unsafe extern "C" fn(*mut busbar_subscription),
        pub bus_free: unsafe extern "C" fn(*mut busbar_bus),
    }

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    const RTLD_NOW: c_int = 2;

    /// The function `name` of `handle` as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be the function's real signature.
    unsafe fn sym<F: Copy>(handle: *mut c_void, name: &str) -> F {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        let name = CString::new(name).unwrap();
        // SAFETY: a handle from dlopen and a C string.
        let f = unsafe { dlsym(handle, name.as_ptr()) };
        assert!(!f.is_null(), "libbusbar.so has no {name:?}");
        // SAFETY: a non-NULL function address, read as the pointer type the caller names.
        unsafe { std::mem::transmute_copy(&f) }
    }

    impl Lib {
        /// Loads the libbusbar.so cargo built for this profile (next to the bench binary).
        pub(crate) fn load() -> Lib {
            let exe = std::env::current_exe().unwrap();
            let path = exe
                .ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join("libbusbar.so"))
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "libbusbar.so not found near {}: run `cargo build --release -p busbar-ffi` first",
                        exe.display()
                    )
                });
            let path = CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: dlopen of our own library; each symbol gets the type its header declares.
            unsafe {
                let handle = dlopen(path.as_ptr(), RTLD_NOW);
                assert!(!handle.is_null(), "dlopen failed for {path:?}");
                Lib {
                    connect_json: sym(handle, "busbar_connect_json"),
                    publish: sym(handle, "busbar_bus_publish"),
                    subscribe: sym(handle, "busbar_bus_subscribe"),
                    set_callback: sym(handle, "busbar_subscription_set_callback"),
                    subscription_free: sym(handle, "busbar_subscription_free"),
                    bus_free: sym(handle, "busbar_bus_free"),
                }
            }
        }
    }
}
use c::*;

const SUBJECT: &str = "bench.orders.created";
const PAYLOAD: [u8; 128] = [7; 128];

unsafe extern "C" fn ignore(_: *mut c_void, _: *const busbar_message, _: c_int) {}

fn c_bus(lib: &Lib, with_subscriber: bool) -> (*mut busbar_bus, *mut busbar_subscription) {
    let mut bus = ptr::null_mut();
    // Capacity above any batch so the drainer never makes the publisher wait.
    let config = CString::new(r#"{"backend":"memory","subscription_capacity":1000000}"#).unwrap();
    let mut sub = ptr::null_mut();
    // SAFETY: the calls and arguments that include/busbar.h documents.
    unsafe {
        assert_eq!((lib.connect_json)(config.as_ptr(), &mut bus), OK);
        if with_subscriber {
            let subject = CString::new(SUBJECT).unwrap();
            assert_eq!((lib.subscribe)(bus, subject.as_ptr(), &mut sub), OK);
            let st = (lib.set_callback)(sub, Some(ignore), ptr::null_mut(), None);
            assert_eq!(st, OK);
        }
    }
    (bus, sub)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lib = Lib::load();
    let shared = Bytes::from_static(&PAYLOAD);
    for with_subscriber in [false, true] {
        let name = if with_subscriber {
            "publish 128 B, 1 subscriber"
        } else {
            "publish 128 B, no subscriber"
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));

        let config = Config::default().with_subscription_capacity(1_000_000);
        let bus: Arc<dyn EventBus> = rt.block_on(busbar_core::connect(config)).unwrap();
        let drainer = with_subscriber.then(|| {
            let mut sub = rt.block_on(bus.subscribe(SUBJECT)).unwrap();
            rt.spawn(async move { while sub.next().await.is_some() {} })
        });
        group.bench_function("rust/shared", |b| {
            b.to_async(&rt).iter(|| bus.publish(SUBJECT, shared.clone()))
        });
        group.bench_function("rust/copied", |b| {
            b.to_async(&rt)
                .iter(|| bus.publish(SUBJECT, Bytes::copy_from_slice(&PAYLOAD)))
        });
        rt.block_on(bus.close()).unwrap();
        if let Some(d) = drainer {
            rt.block_on(d).unwrap();
        }

        let (c_bus, c_sub) = c_bus(&lib, with_subscriber);
        let subject = CString::new(SUBJECT).unwrap();
        group.bench_function("c_abi", |b| {
            b.iter(|| {
                // SAFETY: a live bus, a C string, 128 readable bytes, no headers.
                let st = unsafe {
                    (lib.publish)(
                        c_bus,
                        subject.as_ptr(),
                        PAYLOAD.as_ptr(),
                        PAYLOAD.len(),
                        ptr::null(),
                        0,
                    )
                };
                assert_eq!(st, OK);
            })
        });
        // SAFETY: handles from c_bus, each freed once.
        unsafe {
            (lib.subscription_free)(c_sub);
            (lib.bus_free)(c_bus);
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
