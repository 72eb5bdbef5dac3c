//! The admin API: streams, dead letters and their redrive (audited), audit verification,
//! counters; only for the admin role.

mod support;

use std::time::Duration;

use busbar::{ConsumerConfig, EventBus};
use serde_json::json;
use support::*;

#[tokio::test]
async fn admins_declare_and_inspect_streams() {
    let gw = start(Setup::default()).await;
    let a = gw.addr;
    let r = post_json(
        a,
        "/v1/admin/streams",
        Some(ADMIN),
        &json!({"name":"ORDERS","subjects":["orders.>"],"max_messages":100}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    for n in 0..3 {
        let m = gw
            .gw
            .bus
            .message("orders.new")
            .data(format!("{n}"))
            .build()
            .unwrap();
        gw.gw.bus.publish_durable(m).await.unwrap();
    }
    let list = call(a, "GET", "/v1/admin/streams", Some(ADMIN), &[], b"")
        .await
        .json();
    assert_eq!(list["streams"][0]["name"], "ORDERS");
    assert_eq!(list["streams"][0]["subjects"], json!(["orders.>"]));
    assert_eq!(list["streams"][0]["messages"], 3);
    let info = call(a, "GET", "/v1/admin/streams/ORDERS", Some(ADMIN), &[], b"")
        .await
        .json();
    assert_eq!(
        (info["messages"].as_u64(), info["last_sequence"].as_u64()),
        (Some(3), Some(3))
    );
    for bad in [
        json!({"name":"X"}),
        json!({"name":"X","subjects":["a..b"]}),
        json!([1]),
        json!({"name":"X","subjects":["a"],"evil":1}),
        // schemathesis found this one answered 503 `backend` on NATS.
        json!({"name":"FALSE","subjects":["Ã","Ã"],"max_age_ms":null}),
        json!({"name":"X","subjects":["a"],"max_age_ms":0}),
    ] {
        let r = post_json(a, "/v1/admin/streams", Some(ADMIN), &bad).await;
        assert_eq!(r.status / 100, 4, "{bad}");
        assert!(
            ["invalid_argument", "invalid_subject"].contains(&r.code().as_str()),
            "{bad}"
        );
    }
    let r = call(a, "GET", "/v1/admin/streams/NOPE", Some(ADMIN), &[], b"").await;
    assert_eq!(r.status / 100, 4);
    r.code();
    let r = post_json(
        a,
        "/v1/admin/streams",
        Some(BILLING),
        &json!({"name":"Y","subjects":["y"]}),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
}

#[tokio::test]
async fn a_dead_letter_is_listed_without_its_payload_and_redrive_moves_it_back_audited() {
    let dir = std::env::temp_dir().join(format!("busbar-gw-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.log");
    let _ = std::fs::remove_file(&audit);
    let _ = std::fs::remove_file(busbar::policy::head_path(&audit));
    let gw = start(Setup {
        audit: Some(audit.clone()),
        ..Setup::default()
    })
    .await;
    let a = gw.addr;
    let bus = &gw.gw.bus;
    bus.declare_stream(busbar::StreamConfig::new("CLAIMS", ["claims.>"]))
        .await
        .unwrap();
    let worker = busbar::policy::Principal::new("worker", ["clinician"]);
    let mut consumer = bus
        .durable_subscribe_as(&worker, ConsumerConfig::new("CLAIMS", "worker").max_deliver(1))
        .await
        .unwrap();
    let r = call(
        a,
        "POST",
        "/v1/publish/claims.bad",
        Some(CLINICIAN),
        &[("Content-Type", "application/json")],
        br#"{"diagnosis":"secret"}"#,
    )
    .await;
    assert_eq!(r.status, 202);
    // The HTTP publish is plain; store one durably for the consumer.
    let m = bus
        .message("claims.bad")
        .data(r#"{"diagnosis":"secret"}"#)
        .build()
        .unwrap();
    bus.publish_durable(m).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    first.term("cannot parse").await.unwrap();

    let list = call(a, "GET", "/v1/admin/dlq", Some(ADMIN), &[], b"")
        .await
        .json();
    let letters = list["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{list}");
    let letter = &letters[0];
    assert_eq!(letter["subject"], "claims.bad");
    assert_eq!(letter["reason"], "terminated: cannot parse");
    assert!(
        letter.get("data").is_none() && !list.to_string().contains("secret"),
        "no payload: {list}"
    );
    let sequence = letter["sequence"].as_u64().unwrap();

    // Not for a non-admin; an unknown sequence is 404.
    let r = call(
        a,
        "POST",
        &format!("/v1/admin/dlq/{sequence}/redrive"),
        Some(CLINICIAN),
        &[],
        b"",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    let r = call(a, "POST", "/v1/admin/dlq/999/redrive", Some(ADMIN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = call(a, "POST", "/v1/admin/dlq/x/redrive", Some(ADMIN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));
    let r = call(a, "GET", "/v1/admin/dlq?stream=a.b", Some(ADMIN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));

    let r = call(
        a,
        "POST",
        &format!("/v1/admin/dlq/{sequence}/redrive"),
        Some(ADMIN),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["subject"], "claims.bad");
    // Back on its subject, in its stream: the consumer gets it again, without dlq headers.
    let again = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again.message().subject(), "claims.bad");
    assert_eq!(again.message().data().as_ref(), br#"{"diagnosis":"secret"}"#);
    assert!(again
        .message()
        .headers()
        .keys()
        .all(|k| !k.starts_with("busbar-")));
    again.ack().await.unwrap();
    let list = call(a, "GET", "/v1/admin/dlq", Some(ADMIN), &[], b"")
        .await
        .json();
    assert_eq!(list["dead_letters"], json!([]));
    let r = call(
        a,
        "POST",
        &format!("/v1/admin/dlq/{sequence}/redrive"),
        Some(ADMIN),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "a dead letter is redriven once");

    let report = call(a, "GET", "/v1/admin/audit/verify", Some(ADMIN), &[], b"")
        .await
        .json();
    assert_eq!(
        (report["configured"].as_bool(), report["ok"].as_bool()),
        (Some(true), Some(true)),
        "{report}"
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("redrive of dead letter") && l.contains("\"principal\":\"ops\"")),
        "{log}"
    );
    assert!(log
        .lines()
        .any(|l| l.contains("\"publish\"") && l.contains("\"principal\":\"dr-who\"")));
    assert!(!log.contains("secret"), "the audit log never holds a value");
    // Tampering shows.
    std::fs::write(
        &audit,
        log.replacen("\"principal\":\"ops\"", "\"principal\":\"eve\"", 1),
    )
    .unwrap();
    let report = call(a, "GET", "/v1/admin/audit/verify", Some(ADMIN), &[], b"")
        .await
        .json();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["problems"][0]["kind"], "edited");

    let stats = call(a, "GET", "/v1/admin/stats", Some(ADMIN), &[], b"")
        .await
        .json();
    assert!(stats["gateway"]["published"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["backend"], "memory");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admins_list_and_delete_consumers_and_streams_as_themselves_audited() {
    let dir = std::env::temp_dir().join(format!("busbar-gw-delete-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.log");
    let _ = std::fs::remove_file(&audit);
    let _ = std::fs::remove_file(busbar::policy::head_path(&audit));
    let gw = start(Setup {
        audit: Some(audit.clone()),
        ..Setup::default()
    })
    .await;
    let a = gw.addr;
    let bus = &gw.gw.bus;
    for (name, subjects) in [("ORDERS", "orders.>"), ("PSYCH", "psych.>")] {
        bus.declare_stream(busbar::StreamConfig::new(name, [subjects]))
            .await
            .unwrap();
    }
    let worker = busbar::policy::Principal::new("worker", ["billing"]);
    let sub = bus
        .durable_subscribe_as(
            &worker,
            ConsumerConfig::new("ORDERS", "billing").filter("orders.*"),
        )
        .await
        .unwrap();
    drop(sub);
    let get = |path: &'static str| call(a, "GET", path, Some(ADMIN), &[], b"");
    let list = get("/v1/admin/streams/ORDERS/consumers").await.json();
    assert_eq!(
        list["consumers"],
        json!([{"stream": "ORDERS", "name": "billing", "filter": "orders.*", "pending": 0,
                "ack_pending": 0, "delivered_sequence": 0}])
    );
    let info = get("/v1/admin/streams/ORDERS/consumers/billing").await.json();
    assert_eq!(info["name"], "billing");
    let r = get("/v1/admin/streams/ORDERS/consumers/nope").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));
    let r = get("/v1/admin/streams/NOPE/consumers").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));

    // Deleting: only an admin, and only what the admin's principal may read.
    let consumer = "/v1/admin/streams/ORDERS/consumers/billing";
    let r = call(a, "DELETE", consumer, Some(BILLING), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    let r = call(a, "DELETE", consumer, Some(ADMIN), &[], b"").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"deleted": {"stream": "ORDERS", "consumer": "billing"}})
    );
    assert_eq!(
        get("/v1/admin/streams/ORDERS/consumers").await.json()["consumers"],
        json!([])
    );
    let r = call(a, "DELETE", consumer, Some(ADMIN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));
    let r = call(a, "DELETE", "/v1/admin/streams/PSYCH", Some(ADMIN), &[], b"").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "forbidden"),
        "psych.> is for clinicians"
    );
    let r = call(a, "DELETE", "/v1/admin/streams/ORDERS", Some(ADMIN), &[], b"").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let names: Vec<String> = get("/v1/admin/streams").await.json()["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"PSYCH".to_owned()) && !names.contains(&"ORDERS".to_owned()),
        "{names:?}"
    );
    let r = call(a, "DELETE", "/v1/admin/streams/ORDERS", Some(ADMIN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));

    let log = std::fs::read_to_string(&audit).unwrap();
    let deletes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"action\":\"delete\""))
        .collect();
    assert_eq!(deletes.len(), 2, "{log}");
    assert!(
        deletes.iter().all(|l| l.contains("\"principal\":\"ops\"")),
        "{log}"
    );
    assert!(
        deletes[0].contains("consumer") && deletes[1].contains("stream"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"action\":\"deny\"") && l.contains("psych.>")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_admin_page_is_served() {
    let gw = start(Setup::default()).await;
    let r = call(gw.addr, "GET", "/", None, &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("busbar admin"));
    let r = call(gw.addr, "GET", "/admin/app.js", None, &[], b"").await;
    assert!(r.header("content-type").unwrap().starts_with("text/javascript"));
    let r = call(gw.addr, "GET", "/admin/../../etc/passwd", None, &[], b"").await;
    assert_eq!(r.status, 404);
}
