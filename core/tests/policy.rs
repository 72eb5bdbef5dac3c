//! The policy layer beyond the shared vectors: withholding, key rotation, crypto
//! failures, the audit log under tampering, configuration, request/reply, and on NATS
//! what a plain client sees with encryption on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use busbar::policy::{
    read_range, verify_file, Action, AuditAction, AuditEntry, AuditLog, KeyRing, Policy, PolicyBus,
    Principal, ProblemKind, SubscribeOptions,
};
use busbar::{Config, EventBus, Message, Subscription};

const WAIT: Duration = Duration::from_secs(5);
const SSN: &str = "123-45-6789";
const NAME: &str = "Zoë Ångström";

fn temp_path(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "busbar-policy-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Removes an audit log and its head file (`<log>.head`), so no run leaves files behind.
fn remove_log(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(busbar::policy::head_path(path));
}

fn policy() -> Policy {
    Policy::new()
        .class("phi")
        .class("pii")
        .field("/patient/name", "phi", Action::Redact)
        .field("/patient/mrn", "phi", Action::Hash)
        .field("/patient/ssn", "pii", Action::Partial(4))
        .restrict("phi.raw.>", ["clinician"])
        .grant("clinician", ["phi", "pii"])
        .grant("billing", ["pii"])
}

fn ring(id: &str, byte: u8) -> KeyRing {
    KeyRing::new(id, &[byte; 32]).unwrap()
}

fn clinician() -> Principal {
    Principal::new("dr-house", ["clinician"])
}

fn billing() -> Principal {
    Principal::new("billing-svc", ["billing"])
}

fn event() -> String {
    format!(r#"{{"patient":{{"name":"{NAME}","mrn":"MRN-42","ssn":"{SSN}"}},"ward":4}}"#)
}

async fn memory() -> Arc<dyn EventBus> {
    busbar::connect(Config::default()).await.unwrap()
}

/// A policy bus on a fresh in-memory bus with `policy()`, ring k1, and the given
/// encryption and audit log.
async fn bus_with(encryption: bool, audit: Option<Arc<AuditLog>>) -> PolicyBus {
    bus_on(memory().await, encryption, audit)
}

/// `bus_with` over `inner`.
fn bus_on(inner: Arc<dyn EventBus>, encryption: bool, audit: Option<Arc<AuditLog>>) -> PolicyBus {
    let mut b = PolicyBus::builder(inner)
        .policy(policy())
        .key_ring(ring("k1", 1))
        .encryption(encryption);
    if let Some(log) = audit {
        b = b.audit_log(log);
    }
    b.build().unwrap()
}

async fn next(sub: &mut Subscription) -> busbar::Result<Message> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

async fn nothing_within(sub: &mut Subscription, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), sub.next())
        .await
        .is_err()
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.data()).into_owned()
}

#[tokio::test]
async fn unmaskable_classified_payloads_are_withheld_and_counted() {
    let log_path = temp_path("withheld.jsonl");
    let log = Arc::new(AuditLog::open(&log_path, None).unwrap());
    let bus = bus_with(false, Some(log.clone())).await;
    let mut doctor = bus.subscribe_as(&clinician(), "patients.>").await.unwrap();
    let mut clerk = bus.subscribe_as(&billing(), "patients.>").await.unwrap();
    bus.publish("patients.admitted", format!("name={NAME};ssn={SSN}").into())
        .await
        .unwrap();
    bus.publish("patients.admitted", event().into()).await.unwrap();
    // The clinician holds every class: both arrive, the text one unchanged.
    assert_eq!(
        text(&next(&mut doctor).await.unwrap()),
        format!("name={NAME};ssn={SSN}")
    );
    assert_eq!(text(&next(&mut doctor).await.unwrap()), event());
    // Billing lacks phi: the text cannot be masked, so only the JSON one arrives, masked.
    let got = text(&next(&mut clerk).await.unwrap());
    assert!(
        got.contains(SSN) && !got.contains(NAME) && got.contains("[REDACTED]"),
        "{got}"
    );
    assert!(nothing_within(&mut clerk, 100).await);
    let stats = bus.policy_stats();
    assert_eq!(
        (stats.withheld, stats.delivered, stats.masked),
        (1, 3, 1),
        "{stats:?}"
    );
    let records = read_range(&log_path, None, None).unwrap();
    let withheld: Vec<_> = records
        .iter()
        .filter(|r| r.action == AuditAction::Withhold)
        .collect();
    assert_eq!(withheld.len(), 1);
    assert_eq!(withheld[0].principal, "billing-svc");
    assert_eq!(withheld[0].classes, ["phi", "pii"]);
    let all = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !all.contains(SSN) && !all.contains(NAME),
        "the audit log never holds a protected value"
    );
    assert!(verify_file(&log_path, None).unwrap().is_ok());
    remove_log(&log_path);
}

#[tokio::test]
async fn masking_leaves_the_rest_of_the_payload_byte_for_byte() {
    let bus = bus_with(false, None).await;
    let mut clerk = bus.subscribe_as(&billing(), "p.>").await.unwrap();
    let doc = "{\n  \"patient\": { \"name\" : \"Ann \\\"A\\\"\", \"ssn\": \"1\" },\n  \"n\": 1.50\n}";
    bus.publish("p.x", doc.into()).await.unwrap();
    assert_eq!(
        text(&next(&mut clerk).await.unwrap()),
        doc.replace("\"Ann \\\"A\\\"\"", "\"[REDACTED]\"")
    );
}

#[tokio::test]
async fn nested_rules_apply_in_order_in_clear_and_encrypted() {
    // A rule on an object and one inside it: the order of rules decides, and the text
    // fast path hands such payloads to the tree path, with and without encryption.
    let nested = Policy::new()
        .class("phi")
        .class("pii")
        .field("/patient/ssn", "pii", Action::Partial(4))
        .field("/patient", "phi", Action::Redact)
        .grant("phi-only", ["phi"])
        .grant("pii-only", ["pii"])
        .grant("both", ["phi", "pii"]);
    let doc = format!(r#"{{"patient":{{"name":"{NAME}","ssn":"{SSN}"}},"ward":4}}"#);
    for encryption in [false, true] {
        let inner = memory().await;
        let mut wire = inner.subscribe("p.>").await.unwrap();
        let bus = PolicyBus::builder(inner)
            .policy(nested.clone())
            .key_ring(ring("k1", 1))
            .encryption(encryption)
            .build()
            .unwrap();
        let mut subs = Vec::new();
        for role in ["both", "phi-only", "pii-only"] {
            subs.push(
                bus.subscribe_as(&Principal::new(role, [role]), "p.>")
                    .await
                    .unwrap(),
            );
        }
        bus.publish("p.x", doc.clone().into()).await.unwrap();
        let on_wire = text(&next(&mut wire).await.unwrap());
        assert_eq!(on_wire.contains(SSN), !encryption, "{on_wire}");
        assert_eq!(text(&next(&mut subs[0]).await.unwrap()), doc);
        assert_eq!(
            text(&next(&mut subs[1]).await.unwrap()),
            doc.replace(SSN, "*******6789"),
            "phi granted: the object stays, the ssn inside is masked (encryption {encryption})"
        );
        assert_eq!(
            text(&next(&mut subs[2]).await.unwrap()),
            r#"{"patient":"[REDACTED]","ward":4}"#,
            "encryption {encryption}"
        );
    }
}

#[tokio::test]
async fn restricted_subjects_are_forbidden_and_audited() {
    let log_path = temp_path("deny.jsonl");
    let bus = bus_with(false, Some(Arc::new(AuditLog::open(&log_path, None).unwrap()))).await;
    for pattern in ["phi.raw.>", "phi.raw.labs", ">", "*.raw.*"] {
        let err = bus.subscribe_as(&billing(), pattern).await.unwrap_err();
        assert_eq!(err.code(), "forbidden", "{pattern}: {err}");
        assert!(
            err.to_string().contains("clinician"),
            "the error names the role needed: {err}"
        );
    }
    // Plain subscribe acts as the anonymous principal, which holds no role.
    assert_eq!(
        bus.subscribe("phi.raw.labs").await.unwrap_err().code(),
        "forbidden"
    );
    // An invalid pattern is an invalid_subject, not a denial.
    assert_eq!(
        bus.subscribe_as(&billing(), "phi..raw").await.unwrap_err().code(),
        "invalid_subject"
    );
    assert!(bus.subscribe_as(&billing(), "phi.labs.*").await.is_ok());
    let mut doctor = bus.subscribe_as(&clinician(), "phi.raw.>").await.unwrap();
    bus.publish("phi.raw.labs", event().into()).await.unwrap();
    assert_eq!(text(&next(&mut doctor).await.unwrap()), event());
    assert_eq!(bus.policy_stats().denied, 5);
    let denials = read_range(&log_path, None, None)
        .unwrap()
        .into_iter()
        .filter(|r| r.action == AuditAction::Deny)
        .count();
    assert_eq!(denials, 5);
    remove_log(&log_path);
}

#[tokio::test]
async fn subscriptions_filter_on_classes_and_headers() {
    let bus = bus_with(false, None).await;
    let mut phi_only = bus
        .subscribe_with(&clinician(), "patients.>", SubscribeOptions::new().class("phi"))
        .await
        .unwrap();
    let mut acme = bus
        .subscribe_with(
            &clinician(),
            "patients.>",
            SubscribeOptions::new().header("tenant", "acme"),
        )
        .await
        .unwrap();
    bus.publish("patients.moved", r#"{"ward":5}"#.into())
        .await
        .unwrap();
    let tagged = bus
        .message("patients.moved")
        .data(event())
        .header("tenant", "acme")
        .build()
        .unwrap();
    bus.publish_message(tagged.clone()).await.unwrap();
    assert_eq!(next(&mut phi_only).await.unwrap().id(), tagged.id());
    assert_eq!(next(&mut acme).await.unwrap().id(), tagged.id());
    assert!(nothing_within(&mut phi_only, 50).await && nothing_within(&mut acme, 50).await);
    assert_eq!(bus.policy_stats().filtered, 2);
    let err = bus
        .subscribe_with(&clinician(), "a", SubscribeOptions::new().class("nope"))
        .await
        .unwrap_err();
    assert!(
        err.code() == "invalid_argument" && err.to_string().contains("nope"),
        "{err}"
    );
}

/// Publishes through an encrypting policy bus with `ring` and returns what travels.
async fn encrypted_on_the_wire(ring: KeyRing) -> Message {
    let inner = memory().await;
    let mut raw = inner.subscribe("patients.>").await.unwrap();
    let bus = PolicyBus::builder(inner)
        .policy(policy())
        .key_ring(ring)
        .encryption(true)
        .build()
        .unwrap();
    bus.publish("patients.admitted", event().into()).await.unwrap();
    next(&mut raw).await.unwrap()
}

/// Delivers `wire` (as it travelled) through a policy bus holding `ring`.
async fn deliver_with(
    ring: Option<KeyRing>,
    wire: &Message,
    who: &Principal,
) -> (busbar::Result<Message>, PolicyBus) {
    let inner = memory().await;
    let mut builder = PolicyBus::builder(inner.clone());
    match ring {
        Some(ring) => builder = builder.policy(policy()).key_ring(ring),
        None => {
            // Without a ring a policy may not hash; keep the other rules.
            let mut p = policy();
            p.fields.retain(|f| f.action != Action::Hash);
            builder = builder.policy(p);
        }
    }
    let bus = builder.build().unwrap_or_else(|e| panic!("{e}"));
    let mut sub = bus.subscribe_as(who, "patients.>").await.unwrap();
    inner.publish_message(wire.clone()).await.unwrap();
    (next(&mut sub).await, bus)
}

#[tokio::test]
async fn encrypted_fields_travel_as_ciphertext_and_keys_rotate() {
    let old = encrypted_on_the_wire(ring("k1", 1)).await;
    assert_eq!(old.keyid(), Some("k1"));
    let wire = text(&old);
    assert!(
        !wire.contains(SSN) && !wire.contains(NAME) && !wire.contains("MRN-42"),
        "{wire}"
    );
    assert!(
        wire.contains("busbar:aead:v1:") && wire.contains("\"ward\":4"),
        "{wire}"
    );

    // Rotation: k2 becomes active, k1 stays in the ring for old messages.
    let rotated = || {
        ring("k1", 1)
            .with_key("k2", &[2; 32])
            .unwrap()
            .with_active("k2")
            .unwrap()
    };
    let new = encrypted_on_the_wire(rotated()).await;
    assert_eq!(new.keyid(), Some("k2"));
    for wire in [&old, &new] {
        let (got, _) = deliver_with(Some(rotated()), wire, &clinician()).await;
        let got = got.unwrap();
        assert_eq!(text(&got), event(), "the clinician reads messages of either key");
        assert_eq!(got.keyid(), None, "what is delivered is no longer encrypted");
        assert_eq!(got.id(), wire.id());
        let (masked, _) = deliver_with(Some(rotated()), wire, &billing()).await;
        let masked = text(&masked.unwrap());
        assert!(
            masked.contains(SSN) && masked.contains("[REDACTED]") && !masked.contains(NAME),
            "{masked}"
        );
    }
    // Hashes stay equal across the rotation: the hashing key is pinned to k1.
    let hash_of = |m: &str| {
        let v: serde_json::Value = serde_json::from_str(m).unwrap();
        v["patient"]["mrn"].as_str().unwrap().to_owned()
    };
    let (a, _) = deliver_with(Some(rotated()), &old, &billing()).await;
    let (b, _) = deliver_with(Some(rotated()), &new, &billing()).await;
    assert_eq!(hash_of(&text(&a.unwrap())), hash_of(&text(&b.unwrap())));
}

#[tokio::test]
async fn wrong_or_missing_keys_are_crypto_errors_never_garbage() {
    let wire = encrypted_on_the_wire(ring("k1", 1)).await;
    type MakeRing = fn() -> Option<KeyRing>;
    let cases: [(&str, MakeRing); 3] = [
        ("wrong key under the right id", || Some(ring("k1", 9))),
        ("the key id is not in the ring", || Some(ring("k2", 1))),
        ("no key ring at all", || None),
    ];
    for (what, make) in cases {
        for who in [clinician(), billing()] {
            let (got, bus) = deliver_with(make(), &wire, &who).await;
            let err = got.expect_err(what);
            assert_eq!(err.code(), "crypto", "{what}: {err}");
            assert!(!err.to_string().contains(SSN), "{err}");
            assert_eq!(bus.policy_stats().crypto_errors, 1, "{what}");
        }
    }
    // A ciphertext altered on the way fails too (GCM authenticates it).
    let tampered_text = text(&wire).replacen("busbar:aead:v1:", "busbar:aead:v1:AAAA", 1);
    let tampered = wire.to_builder().data(tampered_text).build().unwrap();
    let (got, _) = deliver_with(Some(ring("k1", 1)), &tampered, &clinician()).await;
    assert_eq!(got.unwrap_err().code(), "crypto");
    // So does a ciphertext moved to another message (the id is bound to it).
    let moved = wire.to_builder().id("another-id").build().unwrap();
    let (got, _) = deliver_with(Some(ring("k1", 1)), &moved, &clinician()).await;
    assert_eq!(got.unwrap_err().code(), "crypto");
}

#[tokio::test]
async fn a_classified_text_payload_is_encrypted_whole() {
    let inner = memory().await;
    let mut raw = inner.subscribe("notes.>").await.unwrap();
    let bus = PolicyBus::builder(inner)
        .policy(policy())
        .key_ring(ring("k1", 1))
        .encryption(true)
        .build()
        .unwrap();
    let mut doctor = bus.subscribe_as(&clinician(), "notes.>").await.unwrap();
    let mut clerk = bus.subscribe_as(&billing(), "notes.>").await.unwrap();
    let note = bus
        .message("notes.daily")
        .data(format!("{NAME} slept well"))
        .classification("phi")
        .build()
        .unwrap();
    bus.publish_message(note).await.unwrap();
    let wire = next(&mut raw).await.unwrap();
    assert!(text(&wire).starts_with("busbar:aead:v1:") && !text(&wire).contains(NAME));
    assert_eq!(
        text(&next(&mut doctor).await.unwrap()),
        format!("{NAME} slept well")
    );
    assert!(
        nothing_within(&mut clerk, 100).await,
        "billing lacks phi: withheld"
    );
    assert_eq!(bus.policy_stats().withheld, 1);
    assert_eq!(bus.policy_stats().encrypted, 1);
}

#[tokio::test]
async fn requests_are_encrypted_and_replies_masked_for_the_requester() {
    let bus = Arc::new(bus_with(true, None).await);
    let mut wire = bus.inner().subscribe(">").await.unwrap();
    let responder = bus.subscribe_as(&clinician(), "patients.lookup").await.unwrap();
    let server = tokio::spawn(busbar::serve(responder, |req| async move {
        assert!(
            String::from_utf8_lossy(req.data()).contains("MRN-42"),
            "decrypted for the clinician"
        );
        event().into()
    }));
    let ask = |bus: Arc<PolicyBus>, who: Principal| async move {
        let req = bus
            .message("patients.lookup")
            .data(r#"{"patient":{"mrn":"MRN-42"}}"#)
            .build()
            .unwrap();
        bus.request_as(&who, req, WAIT).await.unwrap()
    };
    assert_eq!(text(&ask(bus.clone(), clinician()).await), event());
    let masked = text(&ask(bus.clone(), billing()).await);
    assert!(masked.contains(SSN) && !masked.contains(NAME), "{masked}");
    bus.close().await.unwrap();
    assert_eq!(server.await.unwrap().unwrap(), 2);
    // Requests and replies alike crossed the bus encrypted.
    let mut seen = 0;
    while let Some(Ok(m)) = wire.next().await {
        let body = text(&m);
        assert!(
            !body.contains(NAME) && !body.contains("MRN-42"),
            "in clear on the bus: {body}"
        );
        assert_eq!(m.keyid(), Some("k1"), "{body}");
        seen += 1;
    }
    assert_eq!(seen, 4, "two requests and two replies");
}

#[tokio::test]
async fn configuration_alone_turns_the_policy_on() {
    let dir = temp_path("config");
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    std::fs::write(
        &policy_path,
        r#"{"classes":["pii"],"fields":[{"path":"/ssn","class":"pii","action":"hash"}]}"#,
    )
    .unwrap();
    let ring_path = dir.join("ring.json");
    std::fs::write(
        &ring_path,
        r#"{"active":"k1","keys":{"k1":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}"#,
    )
    .unwrap();
    let audit_path = dir.join("audit.jsonl");
    let vars = [
        ("BUSBAR_POLICY", policy_path.to_str().unwrap()),
        ("BUSBAR_KEY_RING", ring_path.to_str().unwrap()),
        ("BUSBAR_ENCRYPTION", "true"),
        ("BUSBAR_AUDIT_LOG", audit_path.to_str().unwrap()),
    ];
    let bus = busbar::connect(Config::from_vars(vars).unwrap()).await.unwrap();
    let mut sub = bus.subscribe("people.>").await.unwrap();
    bus.publish("people.joined", format!(r#"{{"ssn":"{SSN}"}}"#).into())
        .await
        .unwrap();
    let got = text(&next(&mut sub).await.unwrap());
    // Anonymous: the hash of the SSN under the vectors' key (see masking.json).
    assert!(
        !got.contains(SSN) && got.len() == r#"{"ssn":""}"#.len() + 64,
        "{got}"
    );
    let records = read_range(&audit_path, None, None).unwrap();
    let actions: Vec<_> = records.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [AuditAction::Publish, AuditAction::Mask, AuditAction::Deliver]
    );
    assert_eq!(
        records[0].fields,
        ["/ssn"],
        "the publish record names the encrypted field"
    );
    let ring = KeyRing::from_file(ring_path.to_str().unwrap()).unwrap();
    assert!(verify_file(&audit_path, Some(&ring)).unwrap().is_ok());

    let err = busbar::connect(Config::from_vars([("BUSBAR_ENCRYPTION", "true")]).unwrap())
        .await
        .err()
        .expect("encryption without a key ring is refused");
    assert!(
        err.code() == "invalid_argument" && err.to_string().contains("key ring"),
        "{err}"
    );
    let err = busbar::connect(Config::from_vars([("BUSBAR_POLICY", "/nonexistent/policy.json")]).unwrap())
        .await
        .err()
        .expect("a missing policy file is refused");
    assert!(err.to_string().contains("/nonexistent/policy.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bus_acts_as_the_configured_principal() {
    let dir = temp_path("principal");
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    std::fs::write(
        &policy_path,
        r#"{"classes":["pii"],"fields":[{"path":"/ssn","class":"pii","action":"partial","keep":4}],
            "restricted":[{"subjects":"hr.secret.>","roles":["hr"]}],"grants":{"hr":["pii"]}}"#,
    )
    .unwrap();
    let connect = |roles: &'static str| {
        let policy = policy_path.to_str().unwrap().to_owned();
        async move {
            let vars = [
                ("BUSBAR_POLICY", policy.as_str()),
                ("BUSBAR_PRINCIPAL", "ann"),
                ("BUSBAR_ROLES", roles),
            ];
            busbar::connect(Config::from_vars(vars).unwrap()).await.unwrap()
        }
    };
    let payload = format!(r#"{{"ssn":"{SSN}"}}"#);
    let hr = connect("auditor, hr").await;
    let mut sub = hr.subscribe("hr.>").await.unwrap();
    hr.publish("hr.secret.raise", payload.clone().into())
        .await
        .unwrap();
    assert_eq!(text(&next(&mut sub).await.unwrap()), payload, "hr is granted pii");

    let other = connect("auditor").await;
    assert_eq!(
        other.subscribe("hr.secret.>").await.unwrap_err().code(),
        "forbidden"
    );
    let mut sub = other.subscribe("people.>").await.unwrap();
    other.publish("people.joined", payload.into()).await.unwrap();
    let got = text(&next(&mut sub).await.unwrap());
    assert!(!got.contains(SSN) && got.ends_with(r#"6789"}"#), "{got}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- audit log

/// `policy::connect` wraps the raw backend exactly once: its `inner()` is the plain bus,
/// which sees payloads in clear, while the policy bus masks them for its principal.
#[tokio::test]
async fn policy_connect_wraps_the_plain_backend_once() {
    let dir = temp_path("wrap-once");
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    std::fs::write(
        &policy_path,
        r#"{"classes":["pii"],"fields":[{"path":"/ssn","class":"pii","action":"partial","keep":4}]}"#,
    )
    .unwrap();
    let vars = [
        ("BUSBAR_POLICY", policy_path.to_str().unwrap()),
        ("BUSBAR_PRINCIPAL", "web"),
    ];
    let bus = busbar::policy::connect(Config::from_vars(vars).unwrap())
        .await
        .unwrap();
    let mut masked = bus.subscribe("people.>").await.unwrap();
    let mut clear = bus.inner().subscribe("people.>").await.unwrap();
    let payload = format!(r#"{{"ssn":"{SSN}"}}"#);
    bus.publish("people.joined", payload.clone().into())
        .await
        .unwrap();
    assert_eq!(
        text(&next(&mut clear).await.unwrap()),
        payload,
        "the inner bus is not a policy bus"
    );
    let got = text(&next(&mut masked).await.unwrap());
    assert!(!got.contains(SSN) && got.ends_with(r#"6789"}"#), "{got}");
    assert_eq!(bus.policy_stats().masked, 1);

    // The configuration is checked as crate::connect checks it, before any backend is built.
    let mut bad = Config::from_vars([("BUSBAR_POLICY", policy_path.to_str().unwrap())]).unwrap();
    bad.max_payload = 0;
    let err = busbar::policy::connect(bad)
        .await
        .expect_err("max_payload 0 is refused");
    assert_eq!(err.code(), "invalid_argument", "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        action: AuditAction::Deliver,
        subject: format!("patients.e{n}"),
        message_id: Some(format!("id-{n}")),
        principal: "svc".into(),
        classes: vec!["phi".into()],
        fields: Vec::new(),
        detail: None,
    }
}

/// A keyed (or unkeyed) log of six records; returns its path and lines.
fn six_records(keyed: bool) -> (std::path::PathBuf, Vec<String>) {
    let path = temp_path("audit.jsonl");
    let ring = ring("k1", 1);
    let log = AuditLog::open(&path, keyed.then_some(&ring)).unwrap();
    for n in 1..=6 {
        log.record(entry(n)).unwrap();
    }
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (path, lines)
}

fn verify_lines(path: &std::path::Path, lines: &[String], keyed: bool) -> Vec<(usize, ProblemKind)> {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    let ring = ring("k1", 1);
    let report = verify_file(path, keyed.then_some(&ring)).unwrap();
    report.problems.iter().map(|p| (p.line, p.kind)).collect()
}

#[test]
fn audit_verify_finds_each_kind_of_tampering() {
    for keyed in [true, false] {
        let (path, lines) = six_records(keyed);
        assert_eq!(verify_lines(&path, &lines, keyed), [], "intact (keyed {keyed})");

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("patients.e3", "patients.e9");
        assert_eq!(
            verify_lines(&path, &edited, keyed),
            [(3, ProblemKind::Edited)],
            "keyed {keyed}"
        );

        let mut removed = lines.clone();
        removed.remove(3);
        assert_eq!(
            verify_lines(&path, &removed, keyed),
            [(4, ProblemKind::Removed)],
            "keyed {keyed}"
        );
        assert_eq!(
            verify_lines(&path, &lines[1..], keyed),
            [(1, ProblemKind::Removed)],
            "first removed"
        );

        let mut copied = lines.clone();
        copied.insert(4, lines[1].clone());
        assert_eq!(
            verify_lines(&path, &copied, keyed),
            [(5, ProblemKind::Inserted)],
            "keyed {keyed}"
        );

        let mut forged = lines.clone();
        forged.insert(2, lines[2].replace("patients.e3", "patients.forged"));
        assert_eq!(
            verify_lines(&path, &forged, keyed),
            [(3, ProblemKind::Inserted)],
            "keyed {keyed}"
        );

        let mut reordered = lines.clone();
        reordered.swap(2, 3);
        let problems = verify_lines(&path, &reordered, keyed);
        assert!(!problems.is_empty(), "keyed {keyed}");
        assert!(
            problems
                .iter()
                .all(|p| p.1 == ProblemKind::Reordered && (p.0 == 3 || p.0 == 4)),
            "{problems:?}"
        );
        remove_log(&path);
    }
}

#[test]
fn an_unkeyed_chain_rewritten_after_an_edit_is_still_caught_by_the_next_record() {
    // Without a key anyone can recompute a hash; the record after the edit still points
    // at the original, so the break shows (a keyed chain cannot be recomputed at all).
    let (path, lines) = six_records(false);
    let mut rec: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    rec["subject"] = "patients.e9".into();
    rec["hash"] = "".into();
    use sha2::Digest;
    let mut unhashed = rec.clone();
    unhashed["hash"] = "".into();
    // Recompute exactly as the writer does: SHA-256 of the record with an empty hash.
    let record: busbar::policy::AuditRecord = serde_json::from_value(unhashed).unwrap();
    let digest = sha2::Sha256::digest(serde_json::to_vec(&record).unwrap());
    rec["hash"] = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    let mut edited = lines.clone();
    edited[2] = rec.to_string();
    let problems = verify_lines(&path, &edited, false);
    assert_eq!(problems, [(3, ProblemKind::Edited)]);
    remove_log(&path);
}

#[test]
fn the_writer_sees_records_cut_from_the_end_and_resumes_its_chain() {
    let path = temp_path("tail.jsonl");
    let log = AuditLog::open(&path, None).unwrap();
    for n in 1..=4 {
        log.record(entry(n)).unwrap();
    }
    assert!(log.verify().unwrap().is_ok());
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let report = verify_file(&path, None).unwrap();
    assert_eq!(
        report.problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [ProblemKind::Removed],
        "the head file shows the cut tail: {report:?}"
    );
    let report = log.verify().unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Removed);
    assert!(
        report.problems[0].detail.contains("3..=4"),
        "{:?}",
        report.problems
    );
    // Reopening continues the chain from the last record in the file.
    std::fs::write(&path, text).unwrap();
    drop(log);
    let log = AuditLog::open(&path, None).unwrap();
    log.record(entry(5)).unwrap();
    assert_eq!(log.head().0, 5);
    assert!(log.verify().unwrap().is_ok());
    remove_log(&path);
}

#[test]
fn the_reader_replays_a_time_range() {
    let path = temp_path("range.jsonl");
    let log = AuditLog::open(&path, None).unwrap();
    log.record(entry(1)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let from = SystemTime::now();
    log.record(entry(2)).unwrap();
    log.record(entry(3)).unwrap();
    let to = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    log.record(entry(4)).unwrap();
    let seqs: Vec<u64> = read_range(&path, Some(from), Some(to))
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(read_range(&path, None, None).unwrap().len(), 4);
    std::fs::write(&path, "not a record\n").unwrap();
    let err = read_range(&path, None, None).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    remove_log(&path);
}

// ---------------------------------------------------------------- NATS

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_a_plain_client_never_sees_a_protected_value() {
    use futures_util::StreamExt;
    let server = nats_server::NatsServer::start_async().await;
    let config = server.config();
    let plain = async_nats::connect(server.url()).await.unwrap();
    let mut raw = plain.subscribe("patients.>").await.unwrap();
    // async-nats' flush is no round trip: wait for the server to echo a probe through the
    // subscription, so it is registered before busbar publishes on another connection.
    plain.publish("patients.probe", "".into()).await.unwrap();
    let probe = tokio::time::timeout(WAIT, raw.next()).await.unwrap().unwrap();
    assert_eq!(probe.subject.as_str(), "patients.probe");
    // Publisher and subscribers in separate processes' worth of buses, sharing the ring.
    let publisher = PolicyBus::builder(busbar::connect(config.clone()).await.unwrap())
        .policy(policy())
        .key_ring(ring("k1", 1))
        .encryption(true)
        .build()
        .unwrap();
    let receiver = PolicyBus::builder(busbar::connect(config).await.unwrap())
        .policy(policy())
        .key_ring(ring("k1", 1))
        .build()
        .unwrap();
    let mut doctor = receiver.subscribe_as(&clinician(), "patients.>").await.unwrap();
    let mut clerk = receiver.subscribe_as(&billing(), "patients.>").await.unwrap();
    receiver.flush().await.unwrap();
    for _ in 0..3 {
        publisher
            .publish("patients.admitted", event().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..3 {
        let wire = tokio::time::timeout(WAIT, raw.next()).await.unwrap().unwrap();
        let body = String::from_utf8_lossy(&wire.payload).into_owned();
        // `*6789` is the partial mask's tail: `*` is outside base64's alphabet, so random
        // ciphertext can never hold it (a bare "6789" could, by chance).
        for secret in [SSN, NAME, "MRN-42", "*6789"] {
            assert!(!body.contains(secret), "plain client saw {secret:?} in {body}");
        }
        let headers = wire.headers.expect("CloudEvents headers");
        assert_eq!(headers.get("ce-keyid").map(|v| v.as_str()), Some("k1"));
        for (name, values) in headers.iter() {
            for v in values {
                assert!(!v.as_str().contains(SSN), "header {name} carries the SSN");
            }
        }
        assert_eq!(text(&next(&mut doctor).await.unwrap()), event());
        let masked = text(&next(&mut clerk).await.unwrap());
        assert!(
            masked.contains(SSN) && masked.contains("[REDACTED]") && !masked.contains(NAME),
            "{masked}"
        );
        assert!(!masked.contains("MRN-42"), "the mrn is hashed: {masked}");
    }
    publisher.close().await.unwrap();
    receiver.close().await.unwrap();
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_can_live_in_a_jetstream_stream() {
    use busbar::policy::{verify_text, JetStreamSink};
    let server = tokio::task::spawn_blocking(nats_server::NatsServer::start)
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let key = ring("k1", 1);
    let (sink, stream, last) = JetStreamSink::open(client.clone(), "AUDIT", "audit.records")
        .await
        .unwrap();
    assert!(last.is_none(), "a new stream");
    let log = Arc::new(AuditLog::with_sink(Box::new(sink), Some(&key), None));
    let bus = bus_with(false, Some(log)).await;
    let mut clerk = bus.subscribe_as(&billing(), "patients.>").await.unwrap();
    bus.publish("patients.admitted", event().into()).await.unwrap();
    next(&mut clerk).await.unwrap();
    stream.flush().await.unwrap();
    let text = stream.read_all().await.unwrap();
    assert_eq!(text.lines().count(), 3, "publish, mask, deliver:\n{text}");
    assert!(!text.contains(NAME), "no protected value in the stream");
    assert!(verify_text(&text, Some(&key)).is_ok());

    // Reopening continues the chain from the stream's last record.
    let (sink, stream, last) = JetStreamSink::open(client, "AUDIT", "audit.records")
        .await
        .unwrap();
    let last = last.expect("the stream holds records");
    assert_eq!(last.seq, 3);
    let log = AuditLog::with_sink(Box::new(sink), Some(&key), Some((last.seq, last.hash)));
    log.record(entry(4)).unwrap();
    stream.flush().await.unwrap();
    let report = verify_text(&stream.read_all().await.unwrap(), Some(&key));
    assert!(report.is_ok() && report.records == 4, "{report:?}");

    // A record deleted from the stream shows as removed.
    assert!(stream.delete(2).await.unwrap());
    let report = verify_text(&stream.read_all().await.unwrap(), Some(&key));
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::Removed], "{report:?}");
}

#[tokio::test]
async fn ciphertext_a_receivers_policy_does_not_know_keeps_its_key_id() {
    // A receiver whose policy has no rule for the encrypted fields passes them on as
    // they are, still marked with their key, so a forward does not lose the key id.
    let wire = encrypted_on_the_wire(ring("k1", 1)).await;
    let inner = memory().await;
    let bus = PolicyBus::builder(inner.clone())
        .key_ring(ring("k1", 1))
        .build()
        .unwrap();
    let mut sub = bus.subscribe_as(&clinician(), "patients.>").await.unwrap();
    inner.publish_message(wire.clone()).await.unwrap();
    let got = next(&mut sub).await.unwrap();
    assert_eq!(got.keyid(), Some("k1"));
    assert_eq!(got.data(), wire.data());
}

#[tokio::test]
async fn durable_deliveries_are_encrypted_masked_and_restricted_like_plain_ones() {
    use busbar::{ConsumerConfig, StreamConfig};
    let bus = bus_with(true, None).await;
    bus.declare_stream(StreamConfig::new("PHI", ["phi.>"]))
        .await
        .unwrap();
    let stored = bus.message("phi.admitted").data(event()).build().unwrap();
    bus.publish_durable(stored).await.unwrap();
    let raw = bus.message("phi.raw.labs").data(event()).build().unwrap();
    bus.publish_durable(raw).await.unwrap();

    // What the stream holds (read below the policy layer) is ciphertext.
    let mut below = bus
        .inner()
        .durable_subscribe(ConsumerConfig::new("PHI", "below"))
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, below.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        !text(&m).contains(NAME) && !text(&m).contains(SSN),
        "{}",
        text(&m)
    );

    let read = |who: Principal, name: &'static str| {
        let bus = &bus;
        async move {
            let mut sub = bus
                .durable_subscribe_as(&who, ConsumerConfig::new("PHI", name))
                .await
                .unwrap();
            let mut seen = Vec::new();
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
                let m = m.unwrap();
                seen.push((m.subject().to_owned(), text(&m)));
                m.ack().await.unwrap();
            }
            seen
        }
    };
    let doctor = read(clinician(), "doctor").await;
    assert_eq!(
        doctor.len(),
        2,
        "the clinician reads both, restricted subject included"
    );
    assert!(doctor.iter().all(|(_, t)| *t == event()), "{doctor:?}");
    let clerk = read(billing(), "clerk").await;
    assert_eq!(
        clerk.len(),
        1,
        "the restricted message is withheld from billing: {clerk:?}"
    );
    assert_eq!(clerk[0].0, "phi.admitted");
    assert!(
        !clerk[0].1.contains(NAME),
        "phi is masked for billing: {}",
        clerk[0].1
    );
    assert!(
        clerk[0].1.contains(SSN),
        "pii is granted to billing: {}",
        clerk[0].1
    );
    let err = bus
        .durable_subscribe_as(&billing(), ConsumerConfig::new("PHI", "x").filter("phi.raw.>"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "forbidden");
}

#[tokio::test]
async fn deleting_a_stream_or_consumer_needs_the_right_to_read_it_and_is_audited() {
    deleting_needs_the_right_to_read(memory().await).await;
}

#[path = "support/rabbitmq.rs"]
#[cfg(feature = "rabbitmq")]
mod rabbitmq;

/// The same rights over RabbitMQ's durable streams (its journal) as over memory's.
#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_deleting_needs_the_right_to_read_it_and_is_audited() {
    let exchange = rabbitmq::exchange();
    let _journal = rabbitmq::Journal(exchange.clone());
    deleting_needs_the_right_to_read(rabbitmq::connect(Config::default(), &exchange).await).await;
}

async fn deleting_needs_the_right_to_read(inner: Arc<dyn EventBus>) {
    let log_path = temp_path("delete");
    let log = Arc::new(AuditLog::open(&log_path, None).unwrap());
    let bus = bus_on(inner, false, Some(log));
    bus.declare_stream(busbar::StreamConfig::new("RAW", ["phi.raw.>"]))
        .await
        .unwrap();
    bus.declare_stream(busbar::StreamConfig::new("WARD", ["ward.>"]))
        .await
        .unwrap();
    let reader = busbar::ConsumerConfig::new("RAW", "reader");
    drop(bus.durable_subscribe_as(&clinician(), reader).await.unwrap());
    let ward = busbar::ConsumerConfig::new("WARD", "porter").filter("ward.4");
    drop(bus.durable_subscribe_as(&billing(), ward).await.unwrap());

    // Listing passes through: names, patterns and counts are not protected.
    let names: Vec<String> = bus
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        names.contains(&"RAW".to_owned()) && names.contains(&"WARD".to_owned()),
        "{names:?}"
    );
    assert_eq!(bus.list_consumers("RAW").await.unwrap()[0].name, "reader");

    // Billing may not read phi.raw.>: neither its consumer nor the stream is billing's to delete.
    for denied in [
        bus.delete_consumer_as(&billing(), "RAW", "reader").await,
        bus.delete_stream_as(&billing(), "RAW").await,
        bus.delete_stream("RAW").await, // the bus's own principal: anonymous
    ] {
        assert_eq!(denied.unwrap_err().code(), "forbidden");
    }
    assert_eq!(
        bus.list_consumers("RAW").await.unwrap().len(),
        1,
        "nothing deleted"
    );
    // Unknown names are what they are on any bus.
    let unknown = bus.delete_stream_as(&clinician(), "NOPE").await.unwrap_err();
    assert_eq!(unknown.code(), "invalid_argument");

    // A consumer with a filter is checked on its filter; the others on their stream.
    bus.delete_consumer_as(&billing(), "WARD", "porter")
        .await
        .unwrap();
    bus.delete_consumer_as(&clinician(), "RAW", "reader")
        .await
        .unwrap();
    bus.delete_stream_as(&clinician(), "RAW").await.unwrap();
    bus.delete_stream("WARD").await.unwrap();
    let left: Vec<String> = bus
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        !left.contains(&"RAW".to_owned()) && !left.contains(&"WARD".to_owned()),
        "{left:?}"
    );

    let records = read_range(&log_path, None, None).unwrap();
    let deletes: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.action == AuditAction::Delete)
        .map(|r| (r.principal.as_str(), r.detail.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        deletes,
        [
            ("billing-svc", r#"deleted consumer "porter" of stream "WARD""#),
            ("dr-house", r#"deleted consumer "reader" of stream "RAW""#),
            ("dr-house", r#"deleted stream "RAW""#),
            ("anonymous", r#"deleted stream "WARD""#),
        ]
    );
    let denials = records.iter().filter(|r| r.action == AuditAction::Deny).count();
    assert_eq!(denials, 3);
    assert!(verify_file(&log_path, None).unwrap().is_ok());
    remove_log(&log_path);
}
