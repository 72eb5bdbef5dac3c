//! Request/reply round trip on the in-memory bus: a responder task answers each request.
//! Measured twice: requester as a task on the same runtime (services calling each other
//! in one process), and requester on a thread outside the runtime (every round trip then
//! crosses threads twice).
//!
//!     cargo bench -p busbar-benches --bench request

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Bytes, Config, EventBus};
use criterion::{criterion_group, criterion_main, Criterion};

fn request_reply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bus: Arc<dyn EventBus> = rt.block_on(busbar::connect(Config::default())).unwrap();
    let responder = rt.block_on(bus.subscribe("svc.echo")).unwrap();
    rt.spawn(busbar::serve(responder, |req| async move { req.data().clone() }));
    let payload = Bytes::from(vec![b'x'; 128]);
    let mut group = c.benchmark_group("request_reply_memory_128B");
    group.bench_function("requester_task", |b| {
        b.iter_custom(|iters| {
            let (bus, payload) = (bus.clone(), payload.clone());
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    bus.request("svc.echo", payload.clone(), Duration::from_secs(1))
                        .await
                        .unwrap();
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function("requester_outside_runtime", |b| {
        b.to_async(&rt).iter(|| async {
            bus.request("svc.echo", payload.clone(), Duration::from_secs(1))
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, request_reply);
criterion_main!(benches);
