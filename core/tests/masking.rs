//! The shared masking vectors (tests/vectors/masking.json), read by every language's suite.
//! Each case runs through a real policy bus on the in-memory backend, once in clear and
//! once with field encryption on (the outcome must not change), with an audit log whose
//! mask records must name exactly the masked fields.

use std::sync::Arc;
use std::time::Duration;

use busbar::policy::{
    verify_file, AuditAction, AuditLog, KeyRing, Policy, PolicyBus, Principal, SubscribeOptions,
};
use busbar::{Config, EventBus, Message};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/masking.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("masking.json is JSON")
}

fn temp_path(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "busbar-masking-{}-{tag}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn remove_log(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(busbar::policy::head_path(path));
}

/// Runs one case; returns a description of the mismatch, if any.
async fn run(v: &Value, case: &Value, encryption: bool) -> Result<(), String> {
    let policy = Policy::from_json(&v["policies"][case["policy"].as_str().unwrap()].to_string()).unwrap();
    let ring = KeyRing::from_json(&v["key_ring"].to_string()).unwrap();
    let log_path = temp_path("case");
    let log = Arc::new(AuditLog::open(&log_path, Some(&ring)).unwrap());
    let bus = PolicyBus::builder(busbar::connect(Config::default()).await.unwrap())
        .policy(policy)
        .key_ring(KeyRing::from_json(&v["key_ring"].to_string()).unwrap())
        .encryption(encryption)
        .audit_log(log.clone())
        .build()
        .unwrap();
    let subject = case["subject"].as_str().unwrap();
    let pattern = case["pattern"].as_str().unwrap_or(subject);
    let principal = Principal::new("subscriber", strings(&case["roles"]));
    let mut options = SubscribeOptions::new();
    for class in strings(&case["filter_classes"]) {
        options = options.class(&class);
    }
    let outcome = case["outcome"].as_str().unwrap();
    let mut sub = match bus.subscribe_with(&principal, pattern, options).await {
        Err(e) if outcome == "forbidden" && e.code() == "forbidden" => {
            remove_log(&log_path);
            return if bus.policy_stats().denied == 1 {
                Ok(())
            } else {
                Err("denial not counted".into())
            };
        }
        Err(e) => return Err(format!("subscribe failed: {e}")),
        Ok(_) if outcome == "forbidden" => return Err("subscribe allowed, want forbidden".into()),
        Ok(s) => s,
    };
    let data: Vec<u8> = match case.get("input_text") {
        Some(t) => t.as_str().unwrap().as_bytes().to_vec(),
        None => serde_json::to_vec(&case["input"]).unwrap(),
    };
    let mut builder = Message::builder(subject).data(data);
    if let Some(c) = case["classification"].as_str() {
        builder = builder.classification(c);
    }
    if let Some(headers) = case["headers"].as_object() {
        for (name, value) in headers {
            builder = builder.header(name, value.as_str().unwrap());
        }
    }
    bus.publish_message(builder.build().unwrap()).await.unwrap();
    let next = tokio::time::timeout(
        Duration::from_millis(if outcome == "delivered" { 2000 } else { 100 }),
        sub.next(),
    )
    .await;
    let stats = bus.policy_stats();
    let result = match (outcome, next) {
        ("delivered", Ok(Some(Ok(msg)))) => {
            let want = match case.get("delivered_text") {
                Some(t) => t.as_str().unwrap().to_owned(),
                None => serde_json::to_string(&case["delivered"]).unwrap(),
            };
            let got = String::from_utf8_lossy(msg.data()).into_owned();
            let masked = busbar::policy::audit::read_range(&log_path, None, None)
                .unwrap()
                .into_iter()
                .filter(|r| r.action == AuditAction::Mask)
                .flat_map(|r| r.fields)
                .collect::<Vec<_>>();
            let want_headers = case.get("delivered_headers").map(|h| {
                h.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect::<busbar::Headers>()
            });
            if got != want {
                Err(format!("delivered {got}\n   want {want}"))
            } else if want_headers.is_some_and(|h| &h != msg.headers()) {
                Err(format!(
                    "delivered headers {:?}, want {}",
                    msg.headers(),
                    case["delivered_headers"]
                ))
            } else if masked != strings(&case["masked"]) {
                Err(format!(
                    "audit names masked fields {masked:?}, want {}",
                    case["masked"]
                ))
            } else if msg.keyid().is_some() {
                Err("a delivered message still carries keyid".into())
            } else {
                Ok(())
            }
        }
        ("withheld", Err(_)) if stats.withheld == 1 => Ok(()),
        ("filtered", Err(_)) if stats.filtered == 1 => Ok(()),
        (want, got) => Err(format!("want {want}, got {got:?} (stats {stats:?})")),
    };
    let report = verify_file(&log_path, Some(&ring)).unwrap();
    remove_log(&log_path);
    if !report.is_ok() {
        return Err(format!("audit log does not verify: {:?}", report.problems));
    }
    result
}

async fn run_all(encryption: bool) {
    let v = vectors();
    let cases = v["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 40,
        "masking.json holds {} cases; cut short?",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in cases {
        if let Err(e) = run(&v, case, encryption).await {
            failures.push(format!("[{}] {e}", case["name"].as_str().unwrap()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn masking_vectors() {
    run_all(false).await;
}

#[tokio::test]
async fn masking_vectors_with_field_encryption() {
    run_all(true).await;
}

#[test]
fn the_hash_key_is_derived_as_the_vectors_say() {
    // The file states the derived hashing key; a one-field hash case must match it.
    let v = vectors();
    let ring = KeyRing::from_json(&v["key_ring"].to_string()).unwrap();
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("hash of a string"))
        .unwrap();
    let want = case["delivered"]["patient"]["mrn"].as_str().unwrap();
    assert_eq!(
        ring.hash_hex(case["input"]["patient"]["mrn"].as_str().unwrap().as_bytes()),
        want
    );
    assert_eq!(v["hash_key_hex"].as_str().unwrap().len(), 64);
}
