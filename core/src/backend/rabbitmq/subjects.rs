//! busbar subjects and patterns as AMQP topic routing and binding keys.
//!
//! Both use `.` between words. A busbar `*` token and an AMQP `*` word both match one
//! word; a trailing `>` (one or more words) becomes `*.#` (one word, then zero or more).
//! A routing key is always literal, so every subject is its own routing key. What AMQP
//! cannot express is refused with `invalid_subject` naming the limit, never routed
//! differently: a key over 255 bytes (an AMQP short string), and a pattern with a
//! literal `#` token (a wildcard in a binding key, an ordinary token in busbar).
//! `*` or `#` inside a longer token (`a*`, `#b`) is literal in both.

use crate::error::{Error, Result};
use crate::subject::{validate_pattern, validate_subject};

/// Longest routing or binding key: an AMQP short string.
pub const MAX_KEY_BYTES: usize = 255;

const TOO_LONG: &str = "is over 255 bytes as an AMQP routing key, the RabbitMQ backend's limit";
const TOO_LONG_PATTERN: &str =
    "is over 255 bytes as an AMQP binding key (a trailing '>' becomes '*.#'), the RabbitMQ backend's limit";
const LITERAL_HASH: &str =
    "has a '#' token, a wildcard in AMQP binding keys: the RabbitMQ backend cannot subscribe to it literally";

/// The routing key of `subject`: the subject itself, when it is valid and fits.
pub fn routing_key(subject: &str) -> Result<&str> {
    validate_subject(subject)?;
    if subject.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidSubject {
            subject: subject.to_owned(),
            reason: TOO_LONG,
        });
    }
    Ok(subject)
}

/// The binding key of `pattern`: `>` as `*.#`, everything else as it is.
pub fn binding_key(pattern: &str) -> Result<String> {
    validate_pattern(pattern)?;
    if pattern.split('.').any(|token| token == "#") {
        return Err(Error::InvalidSubject {
            subject: pattern.to_owned(),
            reason: LITERAL_HASH,
        });
    }
    let key = match pattern.strip_suffix('>') {
        Some(head) if head.is_empty() || head.ends_with('.') => format!("{head}*.#"),
        _ => pattern.to_owned(),
    };
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidSubject {
            subject: pattern.to_owned(),
            reason: TOO_LONG_PATTERN,
        });
    }
    Ok(key)
}

/// The name of the queue a queue group shares on `exchange`: one per (pattern, group), as
/// NATS keeps one group per subscription subject. A hash of both comes first, so a name
/// cut to fit a short string (a queue name's limit) still tells groups apart; the
/// readable rest is for people looking at the broker.
pub(crate) fn group_queue(exchange: &str, pattern: &str, group: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{pattern}\0{group}").as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("{exchange}.group.{hash}.{group}.{pattern}");
    if name.len() > MAX_KEY_BYTES {
        let mut end = MAX_KEY_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_binding_keys() {
        assert_eq!(binding_key("a.b").unwrap(), "a.b");
        assert_eq!(binding_key("a.*").unwrap(), "a.*");
        assert_eq!(binding_key("a.>").unwrap(), "a.*.#");
        assert_eq!(binding_key(">").unwrap(), "*.#");
        assert_eq!(binding_key("*.>").unwrap(), "*.*.#");
        assert_eq!(binding_key("a*.b>").unwrap(), "a*.b>");
        assert_eq!(binding_key("a.#b").unwrap(), "a.#b");
    }

    #[test]
    fn what_amqp_cannot_express_is_refused_by_name() {
        for p in ["#", "a.#", "#.a", "a.#.>"] {
            let e = binding_key(p).unwrap_err();
            assert_eq!(e.code(), "invalid_subject", "{p}");
            assert!(e.to_string().contains("AMQP"), "{e}");
        }
        let long = "a".repeat(256);
        assert!(routing_key(&long).unwrap_err().to_string().contains("255 bytes"));
        assert!(routing_key(&"a".repeat(255)).is_ok());
        let near = format!("{}.>", "a".repeat(252));
        assert!(binding_key(&near).unwrap_err().to_string().contains("255 bytes"));
        assert!(binding_key(&format!("{}.>", "a".repeat(250))).is_ok());
        // A '#' token in a subject is literal in a routing key: it stays publishable.
        assert_eq!(routing_key("a.#").unwrap(), "a.#");
        assert_eq!(routing_key("a.*").unwrap_err().code(), "invalid_subject");
    }

    #[test]
    fn group_queue_names_fit_a_short_string() {
        let name = group_queue("busbar", &"p".repeat(300), &"g".repeat(300));
        assert!(name.len() <= MAX_KEY_BYTES, "{}", name.len());
        assert_ne!(name, group_queue("busbar", &"q".repeat(300), &"g".repeat(300)));
        assert_ne!(
            group_queue("busbar", "b.c", "a"),
            group_queue("busbar", "c", "a.b")
        );
        assert!(group_queue("busbar", "a.>", "w").ends_with(".w.a.>"));
    }
}
