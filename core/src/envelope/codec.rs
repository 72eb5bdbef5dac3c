//! The NATS wire mapping (CloudEvents binary content mode): pure functions, no I/O.

use super::*;
use crate::bounds::MAX_HEADER_BLOCK;
use crate::error::quote;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// CloudEvents spec version busbar writes and reads.
pub const SPEC_VERSION: &str = "1.0";

/// A header name: one of the envelope's own (static), or a user header's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName<'a> {
    /// An attribute header (`ce-*`, `content-type`, `Nats-Msg-Id`).
    Attribute(&'static str),
    /// A user header.
    User(&'a str),
}

impl HeaderName<'_> {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Attribute(s) => s,
            HeaderName::User(s) => s,
        }
    }
}

/// Calls `put(name, value)` for every header `msg` travels with on NATS, in a fixed order:
/// `ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-subject`, `ce-time`,
/// `content-type`, the extension attributes that are set, `Nats-Msg-Id`, then user headers.
/// Attribute names are `'static`, so a transport can use them without copying.
pub fn encode_headers_into(msg: &Message, put: impl FnMut(HeaderName<'_>, &str)) {
    encode_with_time(msg, &format_time(msg.time()), put);
}

/// Bytes of the NATS header block of `msg` (`NATS/1.0\r\n`, a `name: value\r\n` line per
/// header, `\r\n`): what a NATS server counts toward its `max_payload` besides the
/// payload, and what both backends count (docs/design.md §4). Formats nothing.
pub fn header_block_len(msg: &Message) -> usize {
    // The time's text only matters by its length here.
    const TIME: &str = "0000-00-00T00:00:00.000000000Z";
    let time = &TIME[..time_len(msg.time()).min(TIME.len())];
    let mut len = "NATS/1.0\r\n".len() + "\r\n".len();
    encode_with_time(msg, time, |name, value| {
        len += name.as_str().len() + ": ".len() + value.len() + "\r\n".len()
    });
    len
}

/// Length of [`format_time`]'s text for `t`, computed without formatting.
fn time_len(t: SystemTime) -> usize {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        // Years 1970..=9999: `YYYY-MM-DDTHH:MM:SSZ` plus `.` and the digits needed.
        Ok(d) if d.as_secs() < 253_402_300_800 => {
            let mut nanos = d.subsec_nanos();
            if nanos == 0 {
                return 20;
            }
            let mut digits = 9;
            while nanos % 10 == 0 {
                nanos /= 10;
                digits -= 1;
            }
            21 + digits
        }
        _ => format_time(t).len(),
    }
}

fn encode_with_time(msg: &Message, time: &str, mut put: impl FnMut(HeaderName<'_>, &str)) {
    use HeaderName::Attribute as A;
    put(A("ce-specversion"), SPEC_VERSION);
    put(A("ce-id"), msg.id());
    put(A("ce-source"), msg.source());
    put(A("ce-type"), msg.event_type());
    put(A("ce-subject"), msg.subject());
    put(A("ce-time"), time);
    if let Some(v) = msg.content_type() {
        put(A("content-type"), v);
    }
    for (name, value) in [
        ("ce-correlationid", msg.correlation_id()),
        ("ce-traceparent", msg.traceparent()),
        ("ce-tracestate", msg.tracestate()),
        ("ce-classification", msg.classification()),
        ("ce-keyid", msg.keyid()),
    ] {
        if let Some(v) = value {
            put(A(name), v);
        }
    }
    put(A("Nats-Msg-Id"), &msg.dedupe_id());
    for (name, value) in msg.headers() {
        put(HeaderName::User(name), value);
    }
}

/// [`encode_headers_into`] with plain `&str` names.
pub fn encode_headers_with(msg: &Message, mut put: impl FnMut(&str, &str)) {
    encode_headers_into(msg, |name, value| put(name.as_str(), value));
}

/// [`encode_headers_with`] collected into a list.
pub fn encode_headers(msg: &Message) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(10 + msg.headers().len());
    encode_headers_with(msg, |k, v| out.push((k.to_owned(), v.to_owned())));
    out
}

/// Rebuilds a message from what NATS delivered. A plain NATS message (no `ce-`
/// headers) becomes an event with a generated `id` (or its `Nats-Msg-Id`), source
/// `nats`, type [`DEFAULT_TYPE`] and the receive time. Unknown `ce-*` headers
/// (extensions of other producers) stay in the user headers; a repeated header's
/// values are joined with `", "`.
pub fn decode<'a>(
    subject: &str,
    reply_to: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    data: Bytes,
) -> Result<Message> {
    let mut b = Message::builder(subject).data(data).source("nats");
    let mut nats_msg_id = None;
    let mut time = None;
    let mut user = Headers::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "ce-specversion" if value != SPEC_VERSION => {
                return Err(Error::Decode(format!(
                    "message on {} has ce-specversion {}; busbar reads CloudEvents {SPEC_VERSION}",
                    quote(subject),
                    quote(value)
                )))
            }
            "ce-specversion" | "ce-subject" => {}
            "ce-id" => b = b.id(value),
            "ce-source" => b = b.source(value),
            "ce-type" => b = b.event_type(value),
            "ce-time" => time = Some(parse_time(subject, value)?),
            "content-type" | "ce-datacontenttype" => b = b.content_type(value),
            "ce-correlationid" => b = b.correlation_id(value),
            "ce-traceparent" => b = b.traceparent(value),
            "ce-tracestate" => b = b.tracestate(value),
            "ce-classification" => b = b.classification(value),
            "ce-keyid" => b = b.keyid(value),
            "nats-msg-id" => nats_msg_id = Some(value),
            _ => {
                user.entry(name.to_owned())
                    .and_modify(|v: &mut String| {
                        v.push_str(", ");
                        v.push_str(value);
                    })
                    .or_insert_with(|| value.to_owned());
            }
        }
    }
    if !b.id_set {
        if let Some(id) = nats_msg_id {
            b = b.id(id);
        }
    }
    if let Some(t) = time {
        b = b.time(t);
    }
    if let Some(r) = reply_to {
        b = b.reply_to(r);
    }
    b.env.headers = user;
    // Validate what a foreign producer sent, but report it as a decode problem.
    b.build().map_err(|err| match err {
        Error::InvalidArgument(m) => Error::Decode(format!("message on {}: {m}", quote(subject))),
        e @ Error::InvalidSubject { .. } => Error::Decode(e.to_string()),
        other => other,
    })
}

/// RFC 3339 in UTC with the sub-second digits needed, e.g. `2026-11-24T10:00:00.5Z`.
pub fn format_time(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn parse_time(subject: &str, value: &str) -> Result<SystemTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| {
            Error::Decode(format!(
                "message on {} has ce-time {}, not RFC 3339: {e}",
                quote(subject),
                quote(value)
            ))
        })
}

/// Refuses `msg` when its payload is over `max` (`payload_too_large`, naming both sizes)
/// or its NATS header block is over [`MAX_HEADER_BLOCK`] (`invalid_argument`), the same
/// on both backends (docs/design.md §4). A NATS server counts payload and header block
/// together against its own `max_payload`; the NATS backend keeps [`MAX_HEADER_BLOCK`] of
/// the server's limit for headers, so a payload up to `max` always fits.
pub(crate) fn check_size(msg: &Message, max: usize) -> Result<()> {
    let size = msg.data().len();
    if size > max {
        return Err(Error::PayloadTooLarge { size, max });
    }
    let headers = header_block_len(msg);
    if headers > MAX_HEADER_BLOCK {
        return Err(Error::InvalidArgument(format!(
            "the header block of message {} is {headers} bytes (attributes and headers as NATS \
             carries them), over the limit of {MAX_HEADER_BLOCK} bytes",
            msg.id()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_quote_foreign_values_short() {
        let subject = "s".repeat(4000);
        let value = "t".repeat(100_000);
        for (name, value) in [("ce-time", value.as_str()), ("ce-specversion", value.as_str())] {
            let err = decode(&subject, None, [(name, value)], Bytes::new()).unwrap_err();
            assert_eq!(err.code(), "decode");
            assert!(
                err.to_string().len() < 400,
                "{name}: {} bytes",
                err.to_string().len()
            );
            assert!(err.to_string().contains("(100000 bytes)"), "{err}");
        }
    }
    use std::time::Duration;

    #[test]
    fn header_block_len_is_what_nats_sends() {
        let mut times = vec![SystemTime::UNIX_EPOCH, SystemTime::now()];
        for nanos in [1, 10, 100_000_000, 123_456_789, 500_000_000, 999_999_999, 120] {
            times.push(SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, nanos));
        }
        times.push(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799));
        for t in times {
            assert_eq!(time_len(t), format_time(t).len(), "{}", format_time(t));
            let mut msg = full().to_builder().time(t).build().unwrap();
            for m in [msg.clone(), Message::builder("a").build().unwrap()] {
                let mut block = String::from("NATS/1.0\r\n");
                encode_headers_with(&m, |k, v| block.push_str(&format!("{k}: {v}\r\n")));
                block.push_str("\r\n");
                assert_eq!(header_block_len(&m), block.len());
            }
            msg = msg.to_builder().header("big", "x".repeat(5000)).build().unwrap();
            assert!(header_block_len(&msg) > 5000);
        }
    }

    fn full() -> Message {
        Message::builder("orders.eu.created")
            .data(&b"{\"n\":1}"[..])
            .source("svc://checkout")
            .event_type("com.example.order.created")
            .time(SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789))
            .content_type("application/json")
            .correlation_id("c-1")
            .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .tracestate("vendor=1")
            .classification("phi,pii")
            .keyid("k1")
            .reply_to("_INBOX.x.1")
            .header("tenant", "acme")
            .header("ce-partitionkey", "p7")
            .build()
            .unwrap()
    }

    fn same(a: &Message, b: &Message) {
        assert_eq!(a.id(), b.id());
        assert_eq!(a.source(), b.source());
        assert_eq!(a.event_type(), b.event_type());
        assert_eq!(a.subject(), b.subject());
        assert_eq!(a.time(), b.time());
        assert_eq!(a.content_type(), b.content_type());
        assert_eq!(a.correlation_id(), b.correlation_id());
        assert_eq!(a.traceparent(), b.traceparent());
        assert_eq!(a.tracestate(), b.tracestate());
        assert_eq!(a.classification(), b.classification());
        assert_eq!(a.keyid(), b.keyid());
        assert_eq!(a.reply_to(), b.reply_to());
        assert_eq!(a.headers(), b.headers());
        assert_eq!(a.data(), b.data());
    }

    #[test]
    fn codec_round_trips_every_attribute() {
        let m = full();
        let headers = encode_headers(&m);
        assert!(headers.contains(&("Nats-Msg-Id".into(), m.id().into())));
        assert!(headers.contains(&("ce-time".into(), "2026-11-18T11:06:40.123456789Z".into())));
        let back = decode(
            m.subject(),
            m.reply_to(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            m.data().clone(),
        )
        .unwrap();
        same(&m, &back);
    }

    #[test]
    fn codec_round_trips_a_minimal_message() {
        let m = Message::builder("a").build().unwrap();
        let headers = encode_headers(&m);
        let back = decode(
            "a",
            None,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            Bytes::new(),
        )
        .unwrap();
        same(&m, &back);
    }

    #[test]
    fn plain_nats_message_gets_generated_attributes() {
        let m = decode(
            "sensors.t1",
            None,
            [("Nats-Msg-Id", "abc"), ("x", "1"), ("x", "2")],
            Bytes::from_static(b"21.5"),
        )
        .unwrap();
        assert_eq!(m.id(), "abc");
        assert_eq!(m.source(), "nats");
        assert_eq!(m.event_type(), DEFAULT_TYPE);
        assert_eq!(m.header("x"), Some("1, 2"));
        let m = decode("sensors.t1", None, [], Bytes::new()).unwrap();
        assert_eq!(m.id().len(), 36, "a UUID was generated");
    }

    #[test]
    fn foreign_time_with_offset_is_read() {
        let m = decode(
            "a",
            None,
            [("ce-time", "2026-01-01T01:00:00+01:00")],
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(format_time(m.time()), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn bad_wire_input_is_a_decode_error() {
        for headers in [
            vec![("ce-specversion", "0.3")],
            vec![("ce-time", "yesterday")],
            vec![("ce-id", "")],
        ] {
            let err = decode("a", None, headers.clone(), Bytes::new()).unwrap_err();
            assert_eq!(err.code(), "decode", "{headers:?}: {err}");
        }
        // A subject busbar refuses, sent by a foreign peer, is the wire's fault: `decode`.
        let err = decode("a..b", None, [], Bytes::new()).unwrap_err();
        assert_eq!(err.code(), "decode");
        assert!(err.to_string().contains("a..b"), "{err}");
    }
}
