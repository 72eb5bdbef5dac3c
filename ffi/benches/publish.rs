//! What the C ABI adds to a publish into the in-memory bus, side by side in one run:
//!
//! - `rust/shared`: core's `publish(subject, Bytes)` awaited in Rust, the payload a
//!   shared `Bytes` (a reference count, no copy): the reference.
//! - `rust/copied`: the same with the payload copied from a `&[u8]` on each call, the
//!   copy a C caller's borrowed buffer needs.
//! - `c_abi`: `busbar_publish(bus, subject, data, len, NULL, 0)` through the extern "C"
//!   function: argument checks, the copy, the panic boundary and a `block_on` per call.
//!
//! Each runs with no subscriber and with one subscriber that drains on another thread.
//!
//!     cargo bench -p busbar-ffi --bench publish
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::Arc;

use busbar::{
    busbar_bus, busbar_bus_free, busbar_connect_json, busbar_message, busbar_publish, busbar_status,
};
use busbar::{
    busbar_subscribe, busbar_subscription, busbar_subscription_free, busbar_subscription_set_callback,
};
use busbar_core::{Bytes, Config, EventBus};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SUBJECT: &str = "bench.orders.created";
const PAYLOAD: [u8; 128] = [7; 128];

unsafe extern "C" fn ignore(_: *mut c_void, _: *const busbar_message, _: busbar_status) {}

fn c_bus(with_subscriber: bool) -> (*mut busbar_bus, *mut busbar_subscription) {
    let mut bus = ptr::null_mut();
    // Capacity above any batch so the drainer never makes the publisher wait.
    let config = CString::new(r#"{"backend":"memory","subscription_capacity":1000000}"#).unwrap();
    assert_eq!(
        busbar_connect_json(config.as_ptr(), &mut bus),
        busbar_status::BUSBAR_OK
    );
    let mut sub = ptr::null_mut();
    if with_subscriber {
        let subject = CString::new(SUBJECT).unwrap();
        assert_eq!(
            busbar_subscribe(bus, subject.as_ptr(), &mut sub),
            busbar_status::BUSBAR_OK
        );
        let st = busbar_subscription_set_callback(sub, Some(ignore), ptr::null_mut(), None);
        assert_eq!(st, busbar_status::BUSBAR_OK);
    }
    (bus, sub)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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

        let (c_bus, c_sub) = c_bus(with_subscriber);
        let subject = CString::new(SUBJECT).unwrap();
        group.bench_function("c_abi", |b| {
            b.iter(|| {
                let st = busbar_publish(
                    c_bus,
                    subject.as_ptr(),
                    PAYLOAD.as_ptr(),
                    PAYLOAD.len(),
                    ptr::null(),
                    0,
                );
                assert_eq!(st, busbar_status::BUSBAR_OK);
            })
        });
        busbar_subscription_free(c_sub);
        busbar_bus_free(c_bus);
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
