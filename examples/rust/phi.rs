//! busbar PHI example: one patient event, three services, three views of it.
//!
//! - a clinician sees every field,
//! - billing sees masked identifiers (name redacted, SSN partial, record number hashed),
//! - analytics sees the diagnosis and hashes it can join on, nothing that names anyone.
//!
//! Classified fields are encrypted before they leave the publisher, every step is written
//! to a hash-chained audit log, and the log is verified at the end.
//!
//!     cargo run -p busbar-sdk --example phi
//!
//! Runs on the in-memory bus; BUSBAR_BACKEND=nats BUSBAR_NATS_URL=... runs it on NATS.

use std::sync::Arc;
use std::time::Duration;

use busbar::policy::{self, Action, AuditLog, KeyRing, Policy, PolicyBus, Principal};
use busbar::{Config, EventBus, Subscription};

#[tokio::main]
async fn main() -> Result<(), busbar::Error> {
    // The policy: where each class sits in the payload and who is granted what.
    let policy = Policy::new()
        .class("phi")
        .class("pii")
        .class("financial")
        .field("/patient/name", "pii", Action::Redact)
        .field("/patient/ssn", "pii", Action::Partial(4))
        .field("/patient/mrn", "pii", Action::Hash)
        .field("/diagnosis", "phi", Action::Drop)
        .field("/charges/*/amount", "financial", Action::Redact)
        .restrict("phi.raw.>", ["clinician"])
        .grant("clinician", ["phi", "pii", "financial"])
        .grant("billing", ["financial"])
        .grant("analytics", ["phi"]);

    // Keys: normally a key ring file (BUSBAR_KEY_RING); here a fresh random key.
    let key: [u8; 32] = rand::random();
    let ring = || KeyRing::new("2026-11", &key);
    let key_ring = ring()?;
    let audit_path = std::env::temp_dir().join(format!("busbar-phi-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit_path);
    let _ = std::fs::remove_file(policy::head_path(&audit_path));
    let audit = Arc::new(AuditLog::open(&audit_path, Some(&key_ring))?);

    let backend = busbar::connect(Config::from_env()?).await?;
    let mut wire = backend.subscribe("patients.>").await?; // what the broker carries
    let bus = PolicyBus::builder(backend)
        .policy(policy)
        .key_ring(key_ring)
        .encryption(true)
        .audit_log(audit.clone())
        .build()?;
    println!(
        "connected to the {} bus; encryption on, audit log {}\n",
        bus.backend(),
        audit_path.display()
    );

    let mut clinician = bus
        .subscribe_as(&Principal::new("ward-7", ["clinician"]), "patients.>")
        .await?;
    let mut billing = bus
        .subscribe_as(&Principal::new("billing", ["billing"]), "patients.>")
        .await?;
    let mut analytics = bus
        .subscribe_as(&Principal::new("analytics", ["analytics"]), "patients.>")
        .await?;

    // Restricted subjects need a role: billing may not listen to raw PHI.
    match bus
        .subscribe_as(&Principal::new("billing", ["billing"]), "phi.raw.>")
        .await
    {
        Err(e) => println!("billing subscribing to phi.raw.>: [{}] {e}\n", e.code()),
        Ok(_) => println!("unexpected: billing may read phi.raw.>\n"),
    }

    let event = r#"{"patient":{"name":"Zoë Ångström","ssn":"123-45-6789","mrn":"MRN-00042"},"diagnosis":"E11.9","charges":[{"code":"99213","amount":120.5}],"ward":7}"#;
    let message = bus
        .message("patients.admitted")
        .data(event)
        .content_type("application/json")
        .event_type("com.example.patient.admitted")
        .source("admissions")
        .build()?;
    bus.publish_message(message).await?;
    bus.flush().await?;

    println!("published:  {event}\n");
    let raw = next(&mut wire).await?;
    println!(
        "on the wire (keyid {}): {}\n",
        raw.keyid().unwrap_or("-"),
        abbreviate(&String::from_utf8_lossy(raw.data()))
    );
    for (who, sub) in [
        ("clinician", &mut clinician),
        ("billing", &mut billing),
        ("analytics", &mut analytics),
    ] {
        let msg = next(sub).await?;
        println!("{who:<10}  {}", String::from_utf8_lossy(msg.data()));
    }

    let stats = bus.policy_stats();
    println!(
        "\npolicy: {} published ({} encrypted), {} delivered, {} masked, {} withheld, {} denied",
        stats.published, stats.encrypted, stats.delivered, stats.masked, stats.withheld, stats.denied
    );

    // The audit log: every step, no protected value, hash-chained.
    bus.close().await?;
    let records = policy::read_range(&audit_path, None, None)?;
    println!("\naudit log: {} records", records.len());
    for r in &records {
        println!(
            "  #{:<2} {:<9} {:<18} {:<10} classes [{}] fields [{}]",
            r.seq,
            format!("{:?}", r.action).to_lowercase(),
            r.subject,
            r.principal,
            r.classes.join(","),
            r.fields.join(",")
        );
    }
    let report = audit.verify()?;
    println!(
        "verify: {}",
        if report.is_ok() {
            "intact".to_owned()
        } else {
            format!("{:?}", report.problems)
        }
    );
    let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
    if text.contains("123-45-6789") || text.contains("Zoë") {
        return Err(busbar::Error::InvalidArgument(
            "a protected value reached the audit log".into(),
        ));
    }

    // Tampering shows: change one record of a copy and verify again.
    let tampered = audit_path.with_extension("tampered.jsonl");
    std::fs::write(
        &tampered,
        text.replacen("\"principal\":\"billing\"", "\"principal\":\"ward-7\"", 1),
    )
    .map_err(|e| busbar::Error::InvalidArgument(e.to_string()))?;
    let report = policy::verify_file(&tampered, Some(&ring()?))?;
    for p in &report.problems {
        println!("tampered copy: line {} {:?}: {}", p.line, p.kind, p.detail);
    }
    let _ = std::fs::remove_file(&tampered);
    let intact = audit.verify()?.is_ok();
    let _ = std::fs::remove_file(&audit_path);
    let _ = std::fs::remove_file(policy::head_path(&audit_path));
    if report.is_ok() || !intact {
        return Err(busbar::Error::InvalidArgument(
            "verify missed the tampering, or the log itself changed".into(),
        ));
    }
    Ok(())
}

async fn next(sub: &mut Subscription) -> Result<busbar::Message, busbar::Error> {
    match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        Ok(Some(item)) => item,
        _ => Err(busbar::Error::Timeout {
            subject: sub.pattern().to_owned(),
            timeout: Duration::from_secs(2),
        }),
    }
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() <= 160 {
        return s.to_owned();
    }
    format!("{}…", s.chars().take(160).collect::<String>())
}
