//! The one error type of busbar, with the stable codes of docs/design.md §7.

use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure busbar reports. Bindings map on [`Error::code`], never on the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A subject or pattern breaks the rules of docs/design.md §2.
    #[error("invalid subject {}: {reason}", quote(subject))]
    InvalidSubject {
        /// The offending subject, as given.
        subject: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An argument other than a subject is unacceptable (a header, a config value, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The payload is larger than the bus accepts.
    #[error("payload of {size} bytes exceeds max_payload of {max} bytes")]
    PayloadTooLarge {
        /// Size of the refused payload in bytes.
        size: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// No reply arrived in time.
    #[error("request to {} timed out after {timeout:?}", quote(subject))]
    Timeout {
        /// The subject the request was sent to.
        subject: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// A request found no subscriber on its subject.
    #[error("no responders for request to {}", quote(subject))]
    NoResponders {
        /// The subject the request was sent to.
        subject: String,
    },
    /// The caller is not allowed to do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The bus (or subscription) was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// Bytes on the wire could not be turned into a message.
    #[error("decode error: {0}")]
    Decode(String),
    /// Encryption or decryption failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// The backend (broker connection, runtime) failed.
    #[error("backend error: {message}")]
    Backend {
        /// What went wrong, for a person.
        message: String,
        /// The underlying cause, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend cannot honour this part of the contract, and busbar does not emulate
    /// it: refused rather than behaving differently (docs/design.md §7).
    #[error("unsupported: {feature} is not available on the {backend} backend")]
    Unsupported {
        /// What was asked for (an option, an operation).
        feature: String,
        /// The backend that refuses it.
        backend: &'static str,
    },
    /// The circuit breaker of requests to `subject` is open: its last requests failed
    /// (timeout, no responders, an error reply), so this one fails at once instead of
    /// waiting; one probe request goes through after `retry_in` (docs/design.md §5).
    #[error(
        "circuit open for requests to {}: {failures} consecutive failures; a probe goes through in {} ms",
        quote(subject),
        retry_in.as_millis()
    )]
    CircuitOpen {
        /// The subject whose requests the breaker stops.
        subject: String,
        /// Consecutive failures that opened it.
        failures: u32,
        /// When the next probe request is let through.
        retry_in: Duration,
    },
    /// A configured rate limit refused a publish at once (`rate_limit_mode = "fail"`,
    /// docs/design.md §4): `subject` may publish again after `retry_in`.
    #[error(
        "rate limited: publishing to {} is over {limit}; a message fits again in {} ms",
        quote(subject),
        retry_in.as_millis()
    )]
    RateLimited {
        /// The subject of the refused publish.
        subject: String,
        /// Which limit: `publish_rate` or the pattern of `publish_rate_limits`.
        limit: String,
        /// When the next message fits the limit.
        retry_in: Duration,
    },
    /// Not a failure of a call: a subscription in `lag` back-pressure mode
    /// missed `missed` messages because its buffer was full. The stream goes on.
    #[error(
        "subscription on {} lagged: {missed} messages were dropped because its buffer was full",
        quote(pattern)
    )]
    Lagged {
        /// Pattern of the subscription that lagged.
        pattern: String,
        /// How many messages it did not receive.
        missed: u64,
    },
}

impl Error {
    /// The stable code of this error (docs/design.md §7), e.g. `"invalid_subject"`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSubject { .. } => "invalid_subject",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Timeout { .. } => "timeout",
            Error::NoResponders { .. } => "no_responders",
            Error::Forbidden(_) => "forbidden",
            Error::Closed(_) => "closed",
            Error::Decode(_) => "decode",
            Error::Crypto(_) => "crypto",
            Error::Backend { .. } => "backend",
            Error::Unsupported { .. } => "unsupported",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::RateLimited { .. } => "rate_limited",
            Error::Lagged { .. } => "lagged",
        }
    }

    /// Every code [`Error::code`] can return, for bindings that build one class per code.
    pub const CODES: &'static [&'static str] = &[
        "invalid_subject",
        "invalid_argument",
        "payload_too_large",
        "timeout",
        "no_responders",
        "forbidden",
        "closed",
        "decode",
        "crypto",
        "backend",
        "lagged",
        "unsupported",
        "circuit_open",
        "rate_limited",
    ];

    /// The message for a person, with its chain of causes: what every binding shows (a
    /// Python exception's text, a JavaScript `Error.message`, `busbar_last_error()`).
    /// A cause already written out (a backend message often quotes its source) is not
    /// repeated, so each cause appears once.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let part = c.to_string();
            if !part.is_empty() && !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = c.source();
        }
        text
    }

    pub(crate) fn invalid_subject(subject: &str, reason: &'static str) -> Self {
        Error::InvalidSubject {
            subject: subject.to_owned(),
            reason,
        }
    }
}

/// Most characters of an input quoted in an error message; the rest is summarised.
pub const QUOTE_LIMIT: usize = 64;

/// `input` quoted as `{:?}` would, cut after [`QUOTE_LIMIT`] characters with its size
/// appended (`"aaaa…" (1048576 bytes)`), so an error about a huge input stays small.
pub fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &input[..cut], input.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Cause(&'static str, #[source] Option<Box<Cause>>);

    #[test]
    fn a_report_writes_each_cause_once() {
        let inner = Cause("connection refused", None);
        let outer = Cause("io error: connection refused", Some(Box::new(inner)));
        let err = Error::Backend {
            message: "cannot connect to nats://127.0.0.1:1: io error: connection refused".into(),
            source: Some(Box::new(outer)),
        };
        assert_eq!(
            err.report(),
            "backend error: cannot connect to nats://127.0.0.1:1: io error: connection refused"
        );
        let err = Error::Backend {
            message: "flush failed".into(),
            source: Some(Box::new(Cause(
                "timed out",
                Some(Box::new(Cause("deadline", None))),
            ))),
        };
        assert_eq!(err.report(), "backend error: flush failed: timed out: deadline");
        let plain = Error::InvalidArgument("x".into());
        assert_eq!(plain.report(), plain.to_string());
    }

    #[test]
    fn quoted_inputs_are_cut() {
        assert_eq!(quote("a.b"), "\"a.b\"");
        let exact = "x".repeat(QUOTE_LIMIT);
        assert_eq!(quote(&exact), format!("{exact:?}"));
        let huge = "é".repeat(1 << 20);
        let shown = quote(&huge);
        assert!(shown.ends_with("… (2097152 bytes)"), "{shown}");
        assert_eq!(shown.chars().filter(|&c| c == 'é').count(), QUOTE_LIMIT);
        let err = Error::invalid_subject(&huge, "it is longer than the limit of 2000 bytes");
        assert!(err.to_string().len() < 300, "{err}");
    }
}
