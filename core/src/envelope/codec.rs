//! The NATS wire mapping (CloudEvents binary content mode): pure functions, no I/O.

use super::*;
use crate::bounds::MAX_HEADER_BLOCK;
use crate::error::quote;
use bytes::BytesMut;
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

/// Whether a header block carries `Nats-Msg-Id`, the id JetStream deduplicates by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    /// A durable (JetStream) publish: `Nats-Msg-Id` is [`Message::dedupe_id`].
    With,
    /// A plain publish, request or reply: no `Nats-Msg-Id` (nothing dedupes it, and
    /// `ce-id` carries the id).
    Without,
}

/// Which headers [`encode_with_time`] lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Every attribute, `ce-subject` and `Nats-Msg-Id` included: what RabbitMQ carries
    /// and what the header budget counts on both backends.
    Full,
    /// What NATS carries: no `ce-subject` (the NATS subject is the subject), and
    /// `Nats-Msg-Id` as said.
    Nats(Dedupe),
}

/// Calls `put(name, value)` for every attribute and header of `msg`, in a fixed order:
/// `ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-subject`, `ce-time`,
/// `content-type`, the extension attributes that are set, `Nats-Msg-Id`, then user
/// headers. (On NATS, [`header_block`] leaves out `ce-subject`, and `Nats-Msg-Id` but
/// for durable publishes.) Attribute names are `'static`, so a transport can use them
/// without copying.
pub fn encode_headers_into(msg: &Message, put: impl FnMut(HeaderName<'_>, &str)) {
    encode_with_time(msg, &format_time(msg.time()), Layout::Full, put);
}

/// Calls `put(name, value)` for the headers [`header_block`] writes, in its order: what
/// NATS carries (no `ce-subject`; `Nats-Msg-Id` as `dedupe` says). For a transport that
/// takes headers one by one rather than as a block.
pub fn encode_nats_headers_into(msg: &Message, dedupe: Dedupe, put: impl FnMut(HeaderName<'_>, &str)) {
    encode_with_time(msg, &format_time(msg.time()), Layout::Nats(dedupe), put);
}

/// Bytes of the header block of `msg` with every header [`encode_headers_into`] lists
/// (`NATS/1.0\r\n`, a `name: value\r\n` line per header, `\r\n`): the header budget
/// both backends count, for every kind of publish (docs/design.md §4), never less than
/// what NATS is sent. Formats nothing.
pub fn header_block_len(msg: &Message) -> usize {
    // The time's text only matters by its length here.
    const TIME: &str = "0000-00-00T00:00:00.000000000Z";
    let time = &TIME[..time_len(msg.time()).min(TIME.len())];
    let mut len = "NATS/1.0\r\n".len() + "\r\n".len();
    encode_with_time(msg, time, Layout::Full, |name, value| {
        len += name.as_str().len() + ": ".len() + value.len() + "\r\n".len()
    });
    len
}

/// Messages' header blocks are written one after the other into a buffer of this size
/// per thread and split off it, so a block costs no allocation of its own: the buffer
/// is reused once every block written into it has been sent (and dropped).
const BLOCK_ARENA: usize = 64 * 1024;

thread_local! {
    static BLOCKS: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// The NATS header block of `msg` (CloudEvents binary content mode), in wire form and in
/// [`encode_headers_into`]'s order, without `ce-subject`, with `Nats-Msg-Id` as `dedupe`
/// says. (Building a message checked every name and value: names are printable ASCII
/// without `:`, values hold no line break.)
pub fn header_block(msg: &Message, dedupe: Dedupe) -> Bytes {
    let mut time = TimeText::default();
    let time = time.format(msg.time());
    BLOCKS.with_borrow_mut(|buf| {
        if buf.capacity() == 0 {
            *buf = BytesMut::with_capacity(BLOCK_ARENA);
        }
        buf.reserve(512);
        buf.extend_from_slice(b"NATS/1.0\r\n");
        encode_with_time(msg, time, Layout::Nats(dedupe), |name, value| {
            for part in [name.as_str(), ": ", value, "\r\n"] {
                buf.extend_from_slice(part.as_bytes());
            }
        });
        buf.extend_from_slice(b"\r\n");
        buf.split().freeze()
    })
}

/// [`format_time`] without allocating, for the years 1970 to 9999 (others fall back to it).
#[derive(Default)]
struct TimeText {
    buf: [u8; 30],
    fallback: String,
}

impl TimeText {
    fn format(&mut self, t: SystemTime) -> &str {
        let d = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) if d.as_secs() < 253_402_300_800 => d,
            _ => {
                self.fallback = format_time(t);
                return &self.fallback;
            }
        };
        let secs = d.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let b = &mut self.buf;
        let mut put = |at: usize, value: u64, width: usize| {
            let mut v = value;
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u64, 4);
        put(5, month as u64, 2);
        put(8, day as u64, 2);
        put(11, rem / 3600, 2);
        put(14, rem / 60 % 60, 2);
        put(17, rem % 60, 2);
        let mut nanos = d.subsec_nanos();
        let mut len = 19;
        if nanos != 0 {
            let mut digits = 9;
            while nanos % 10 == 0 {
                nanos /= 10;
                digits -= 1;
            }
            put(20, u64::from(nanos), digits);
            b[19] = b'.';
            len = 20 + digits;
        }
        b[len] = b'Z';
        for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            b[at] = sep;
        }
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&b[..=len]).unwrap_or_default()
    }
}

/// Year, month (1-12) and day (1-31) of the `days`-th day after 1970-01-01 (days ≥ 0), by
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

fn encode_with_time(msg: &Message, time: &str, layout: Layout, mut put: impl FnMut(HeaderName<'_>, &str)) {
    use HeaderName::Attribute as A;
    put(A("ce-specversion"), SPEC_VERSION);
    put(A("ce-id"), msg.id());
    put(A("ce-source"), msg.source());
    put(A("ce-type"), msg.event_type());
    if layout == Layout::Full {
        put(A("ce-subject"), msg.subject());
    }
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
    if layout != Layout::Nats(Dedupe::Without) {
        put(A("Nats-Msg-Id"), &msg.dedupe_id());
    }
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
    let mut b = Message::builder(subject)
        .data(data)
        .source(NATS_SOURCE.with(Arc::clone));
    let mut nats_msg_id = None;
    let mut time = None;
    let mut user = Headers::new();
    for (name, value) in headers {
        match attribute_header(name).unwrap_or("") {
            "ce-specversion" if value != SPEC_VERSION => {
                return Err(Error::Decode(format!(
                    "message on {} has ce-specversion {}; busbar reads CloudEvents {SPEC_VERSION}",
                    quote(subject),
                    quote(value)
                )))
            }
            "ce-specversion" | "ce-subject" => {}
            "ce-id" => b = id(b, value),
            "ce-source" => b = b.source(SOURCES.with(|c| c.get(value))),
            "ce-type" => b = b.event_type(TYPES.with(|c| c.get(value))),
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

/// `name` as one of the envelope's header names (any case; see [`RESERVED_HEADERS`]),
/// lowercase, found without allocating.
fn attribute_header(name: &str) -> Option<&'static str> {
    RESERVED_HEADERS
        .iter()
        .copied()
        .find(|a| a.len() == name.len() && a.eq_ignore_ascii_case(name))
}

/// Sets the id: a UUID's text (what busbar generates) is kept inline, without allocating.
fn id(mut b: MessageBuilder, value: &str) -> MessageBuilder {
    match <[u8; 36]>::try_from(value.as_bytes()) {
        Ok(text) if value.is_ascii() => {
            b.env.id = EventId::Generated(text);
            b.id_set = true;
            b
        }
        _ => b.id(value),
    }
}

/// The last `source` (or `type`) text decoded on this thread and its shared copy: a
/// subscriber mostly sees a few producers, so most messages share one allocation.
#[derive(Default)]
struct LastText(std::cell::RefCell<Option<Arc<str>>>);

impl LastText {
    fn get(&self, value: &str) -> Arc<str> {
        let mut last = self.0.borrow_mut();
        match &*last {
            Some(text) if &**text == value => text.clone(),
            _ => last.insert(Arc::from(value)).clone(),
        }
    }
}

thread_local! {
    static NATS_SOURCE: Arc<str> = Arc::from("nats");
    static SOURCES: LastText = LastText::default();
    static TYPES: LastText = LastText::default();
}

/// RFC 3339 in UTC with the sub-second digits needed, e.g. `2026-11-24T10:00:00.5Z`.
/// A time past what RFC 3339 can write (years 0 to 9999 here) is written as the
/// nearest one it can: formatting never panics, whatever time a message carries.
pub fn format_time(t: SystemTime) -> String {
    let (after, span) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (true, d),
        Err(e) => (false, e.duration()),
    };
    let moved = time::Duration::try_from(span).ok().and_then(|d| match after {
        true => OffsetDateTime::UNIX_EPOCH.checked_add(d),
        false => OffsetDateTime::UNIX_EPOCH.checked_sub(d),
    });
    let edge = match after {
        true => time::PrimitiveDateTime::MAX,
        false => time::PrimitiveDateTime::MIN,
    };
    moved
        .unwrap_or(edge.assume_utc())
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn parse_time(subject: &str, value: &str) -> Result<SystemTime> {
    if let Some(t) = parse_utc_time(value) {
        return Ok(t);
    }
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

/// The time in `value` when it has [`format_time`]'s form (`YYYY-MM-DDTHH:MM:SS`, then
/// `.` and 1 to 9 digits or nothing, then `Z`, years from 1970), read without the `time`
/// crate's general parser; `None` for anything else (which that parser then reads).
fn parse_utc_time(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() < 20 || b.len() > 30 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        b[from..to].iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
        })
    };
    for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        if b[at] != sep {
            return None;
        }
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let nanos = match b.len() {
        20 => 0,
        21 => return None,
        len => {
            if b[19] != b'.' {
                return None;
            }
            let digits = len - 21;
            num(20, len - 1)? * 10u64.pow(9 - digits as u32)
        }
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let secs = days as u64 * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos as u32))
}

/// Days from 1970-01-01 to a date from then on, by Howard Hinnant's `days_from_civil`
/// (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    /// The header block from [`encode_headers_with`]'s list, less what `skip` names.
    fn block_of(m: &Message, skip: &[&str]) -> String {
        let mut block = String::from("NATS/1.0\r\n");
        encode_headers_with(m, |k, v| {
            if !skip.contains(&k) {
                block.push_str(&format!("{k}: {v}\r\n"))
            }
        });
        block + "\r\n"
    }

    #[test]
    fn time_text_is_format_time() {
        let mut times = vec![
            SystemTime::UNIX_EPOCH,
            SystemTime::now(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(1),
            SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799),
            SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 50),
            SystemTime::UNIX_EPOCH - Duration::from_secs(1 << 50),
        ];
        // Leap days, century years, month and year ends, every digit count of the nanos.
        for secs in [
            951_782_400,
            951_868_799,
            4_107_542_400,
            1_709_164_800,
            1_735_689_599,
        ] {
            for nanos in [0, 1, 10, 120, 999_999_999, 500_000_000, 123_456_789] {
                times.push(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos));
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x % 253_402_300_800;
            times.push(SystemTime::UNIX_EPOCH + Duration::new(secs, (x >> 20) as u32 % 1_000_000_000));
        }
        for t in times {
            assert_eq!(TimeText::default().format(t), format_time(t));
        }
        // Past year 9999 the nearest time RFC 3339 can write, never a panic.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 50);
        assert_eq!(format_time(far), "9999-12-31T23:59:59.999999999Z");
        let msg = Message::builder("a").time(far).build().unwrap();
        assert_eq!(header_block_len(&msg), block_of(&msg, &[]).len());
    }

    #[test]
    fn utc_times_are_read_as_the_general_parser_reads_them() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let nanos = match i % 4 {
                0 => 0,
                1 => (x >> 7) as u32 % 1_000_000_000,
                2 => (x >> 7) as u32 % 1000 * 1_000_000,
                _ => (x >> 7) as u32 % 10 * 100_000_000,
            };
            let t = SystemTime::UNIX_EPOCH + Duration::new(x % 253_402_300_800, nanos);
            let text = format_time(t);
            assert_eq!(parse_utc_time(&text), Some(t), "{text}");
        }
        for text in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01 00:00:00Z",
            "1969-12-31T23:59:59Z",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:60Z",
        ] {
            assert_eq!(parse_utc_time(text), None, "{text}");
        }
        for text in ["1969-12-31T23:59:59Z", "2026-01-01T00:00:00+00:00"] {
            let general = OffsetDateTime::parse(text, &Rfc3339).unwrap();
            assert_eq!(parse_time("s", text).unwrap(), SystemTime::from(general));
        }
        assert_eq!(
            parse_time("s", "2026-02-29T00:00:00Z").unwrap_err().code(),
            "decode"
        );
    }

    #[test]
    fn decode_reads_attribute_names_in_any_case_and_keeps_ids_as_sent() {
        let m = decode(
            "a",
            None,
            [
                ("CE-ID", "0190f0c4-7a3b-7c1d-9e2f-a1b2c3d4e5f6"),
                ("Ce-Source", "svc"),
                ("ce-TYPE", "t"),
                ("X-Other", "1"),
            ],
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(m.id(), "0190f0c4-7a3b-7c1d-9e2f-a1b2c3d4e5f6");
        assert_eq!((m.source(), m.event_type()), ("svc", "t"));
        assert_eq!(m.header("X-Other"), Some("1"));
        for id in ["not-a-uuid", "ünicode-id-of-36-bytes-xxxxxxxxxxxx", "x"] {
            let m = decode("a", None, [("ce-id", id)], Bytes::new()).unwrap();
            assert_eq!(m.id(), id);
        }
        let other = decode("a", None, [("ce-source", "other")], Bytes::new()).unwrap();
        assert_eq!(other.source(), "other");
    }

    #[test]
    fn header_block_is_the_header_list_without_the_subject() {
        let dead_letter = full()
            .to_builder()
            .busbar_header(DLQ_STREAM, "S")
            .busbar_header(DLQ_CONSUMER, "C")
            .busbar_header(DLQ_SEQUENCE, "7")
            .build()
            .unwrap();
        for m in [full(), Message::builder("a").build().unwrap(), dead_letter] {
            let with = header_block(&m, Dedupe::With);
            assert_eq!(std::str::from_utf8(&with).unwrap(), block_of(&m, &["ce-subject"]));
            assert!(with.len() <= header_block_len(&m));
            let without = header_block(&m, Dedupe::Without);
            assert_eq!(
                std::str::from_utf8(&without).unwrap(),
                block_of(&m, &["ce-subject", "Nats-Msg-Id"])
            );
            let back = decode(
                m.subject(),
                m.reply_to(),
                encode_headers(&m)
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "ce-subject" | "Nats-Msg-Id"))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
                m.data().clone(),
            )
            .unwrap();
            same(&m, &back);
        }
    }

    #[test]
    fn nats_headers_one_by_one_are_the_header_block() {
        // What busbar-sdk built without `nats-encoded-headers` puts into a HeaderMap is
        // what the encoded path sends, line for line.
        for m in [full(), Message::builder("a").build().unwrap()] {
            for dedupe in [Dedupe::With, Dedupe::Without] {
                let mut lines = String::from("NATS/1.0\r\n");
                encode_nats_headers_into(&m, dedupe, |name, value| {
                    lines.push_str(&format!("{}: {value}\r\n", name.as_str()))
                });
                lines.push_str("\r\n");
                assert_eq!(lines.as_bytes(), &header_block(&m, dedupe)[..]);
            }
        }
    }

    #[test]
    fn header_blocks_written_one_after_another_stay_intact() {
        let messages: Vec<Message> = (0..5000)
            .map(|i| {
                Message::builder(format!("s.{i}"))
                    .header("n", "x".repeat(i % 300))
                    .build()
                    .unwrap()
            })
            .collect();
        let blocks: Vec<Bytes> = messages
            .iter()
            .map(|m| header_block(m, Dedupe::Without))
            .collect();
        for (m, block) in messages.iter().zip(&blocks) {
            assert_eq!(
                std::str::from_utf8(block).unwrap(),
                block_of(m, &["ce-subject", "Nats-Msg-Id"])
            );
        }
        let big = Message::builder("a")
            .header("big", "y".repeat(100_000))
            .build()
            .unwrap();
        assert_eq!(
            header_block(&big, Dedupe::With).len(),
            block_of(&big, &["ce-subject"]).len()
        );
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
