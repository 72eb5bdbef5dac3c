//! What the policy layer adds per delivery, side by side in one run: a 1 KiB JSON
//! document with 5 classified fields (3 redacted, 2 hashed) published and received on
//! the in-memory bus
//!
//! - without a policy (the reference),
//! - through a PolicyBus, subscriber granted every class (nothing to mask),
//! - through a PolicyBus, subscriber granted nothing (5 fields masked),
//! - with field encryption on: 5 fields encrypted on publish, decrypted on delivery,
//!   then masked or not,
//! - masked, with every step written to a file audit log.
//!
//! Each iteration is one publish and one receive on a current-thread runtime.
//!
//!     cargo bench -p busbar-benches --bench policy

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::policy::{Action, AuditLog, KeyRing, Policy, PolicyBus, Principal};
use busbar::{Config, EventBus, Message, Subscription};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

fn document() -> String {
    let mut doc = String::from(
        r#"{"patient":{"name":"Zoë Ångström","ssn":"123-45-6789","mrn":"MRN-0004211","email":"zoe@example.org","address":"Hauptstraße 1, 50667 Köln"},"#,
    );
    doc.push_str(
        r#""encounter":{"ward":7,"bed":"7B","admitted":"2026-11-26T08:15:00Z","codes":["E11.9","I10"]},"#,
    );
    let mut i = 0;
    while doc.len() < 1000 {
        doc.push_str(&format!(
            r#""obs{i}":{{"kind":"vital","value":{},"unit":"mmHg"}},"#,
            100 + i
        ));
        i += 1;
    }
    doc.push_str(r#""end":true}"#);
    doc
}

fn policy() -> Policy {
    Policy::new()
        .class("phi")
        .class("pii")
        .field("/patient/name", "pii", Action::Redact)
        .field("/patient/ssn", "pii", Action::Redact)
        .field("/patient/address", "pii", Action::Redact)
        .field("/patient/mrn", "phi", Action::Hash)
        .field("/patient/email", "pii", Action::Hash)
        .grant("clinician", ["phi", "pii"])
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn memory() -> Arc<dyn EventBus> {
    busbar::connect(Config::default()).await.unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let doc = document();
    assert!((1000..1100).contains(&doc.len()), "{} bytes", doc.len());
    let mut group = c.benchmark_group("policy_delivery_1KiB_5_fields");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    let audit_path = std::env::temp_dir().join(format!("busbar-bench-audit-{}.jsonl", std::process::id()));

    type Setup = (&'static str, Option<(bool, bool)>, &'static [&'static str]);
    // (name, policy (encryption, audit) or none, subscriber roles)
    let variants: [Setup; 6] = [
        ("no_policy", None, &[]),
        ("policy_granted", Some((false, false)), &["clinician"]),
        ("policy_masked", Some((false, false)), &[]),
        ("encrypted_granted", Some((true, false)), &["clinician"]),
        ("encrypted_masked", Some((true, false)), &[]),
        ("masked_with_audit_file", Some((false, true)), &[]),
    ];
    for (name, setup, roles) in variants {
        let (bus, mut sub): (Arc<dyn EventBus>, Subscription) = rt.block_on(async {
            let Some((encryption, audit)) = setup else {
                let bus = memory().await;
                let sub = bus.subscribe("bench.>").await.unwrap();
                return (bus, sub);
            };
            let mut builder = PolicyBus::builder(memory().await)
                .policy(policy())
                .key_ring(KeyRing::new("k1", &[7; 32]).unwrap())
                .encryption(encryption);
            if audit {
                builder = builder.audit_log(Arc::new(AuditLog::open(&audit_path, None).unwrap()));
            }
            let bus = builder.build().unwrap();
            let principal = Principal::new("bench", roles.iter().copied());
            let sub = bus.subscribe_as(&principal, "bench.>").await.unwrap();
            (Arc::new(bus), sub)
        });
        let msg = Message::builder("bench.patient.admitted")
            .data(doc.clone())
            .build()
            .unwrap();
        // Check once that the variant does what its name says.
        rt.block_on(async {
            bus.publish_message(msg.clone()).await.unwrap();
            let got = sub.next().await.unwrap().unwrap();
            let text = String::from_utf8_lossy(got.data()).into_owned();
            let masked = !text.contains("Zoë");
            assert_eq!(masked, name.contains("masked"), "{name}: {text}");
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        bus.publish_message(msg.clone()).await.unwrap();
                        let got = sub.next().await.unwrap().unwrap();
                        std::hint::black_box(got);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_file(&audit_path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
