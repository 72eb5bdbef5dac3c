//! What the policy does to one message: encryption before it leaves the publisher, and,
//! per subscriber, decryption, filtering, masking or withholding. Pure functions of the
//! policy, the key ring and the message; the bus wrapper and the audit log sit around them.

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;

use super::crypto::{KeyRing, CIPHERTEXT_PREFIX};
use super::model::{Action, ClassBits, Compiled, Rule, Tok};
use crate::envelope::Message;
use crate::error::{Error, Result};

/// The policy, the key ring and whether publishing encrypts.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) policy: Compiled,
    pub(crate) ring: Option<KeyRing>,
    pub(crate) encrypt: bool,
}

/// What a subscription asks for besides its subject pattern.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    /// Deliver only messages carrying at least one of these classes (0: no filter).
    pub(crate) classes: ClassBits,
    /// Deliver only messages with every one of these header values.
    pub(crate) headers: Vec<(String, String)>,
}

/// What delivery does with one message for one subscriber.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Deliver this message; `masked` lists the JSON Pointers of masked fields and
    /// `masked_classes` their classes.
    Deliver {
        message: Message,
        classes: ClassBits,
        masked: Vec<String>,
        masked_classes: ClassBits,
    },
    /// Not delivered: classified, and this subscriber may not see it unmasked.
    Withhold { classes: ClassBits, reason: String },
    /// Not what the subscription filters for.
    Filtered,
    /// The message could not be decrypted (`crypto`).
    Failed { classes: ClassBits, error: Error },
}

/// What publishing did to a message.
pub(crate) struct Protected {
    pub(crate) message: Message,
    pub(crate) classes: ClassBits,
    /// Pointers of the fields encrypted (`""` for the whole payload).
    pub(crate) encrypted: Vec<String>,
}

/// The policy's view of one message: rules for its subject and its declared classes.
struct View<'a> {
    rules: SmallVec<[&'a Rule; 8]>,
    /// Classes of the `classification` attribute.
    tagged: ClassBits,
    /// Classes that applicable rules can mask.
    covered: ClassBits,
    /// Names in `classification` the policy does not declare (never granted).
    unknown: Vec<String>,
}

impl View<'_> {
    fn classified(&self) -> bool {
        self.tagged != 0 || !self.unknown.is_empty() || !self.rules.is_empty()
    }
}

fn aad(message_id: &str, path: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + message_id.len() + path.len());
    a.extend_from_slice(b"busbar:aead:v1\0");
    a.extend_from_slice(message_id.as_bytes());
    a.push(0);
    a.extend_from_slice(path.as_bytes());
    a
}

impl Engine {
    fn view<'a>(&'a self, message: &Message) -> View<'a> {
        let rules: SmallVec<[&Rule; 8]> = self
            .policy
            .rules
            .iter()
            .filter(|r| r.applies_to(message.subject()))
            .collect();
        let (tagged, unknown) = self.policy.parse_classes(message.classification());
        let covered = rules.iter().fold(0, |a, r| a | r.class);
        View {
            rules,
            tagged,
            covered,
            unknown,
        }
    }

    /// Encrypts the classified parts of `message` when encryption is on. A JSON payload
    /// whose classes all have field rules gets those fields encrypted; any other classified
    /// payload is encrypted whole. A message that already carries `keyid` is taken as
    /// already encrypted and left alone.
    pub(crate) fn protect(&self, message: Message) -> Result<Protected> {
        let view = self.view(&message);
        let classes = view.tagged | view.covered;
        let ring = match &self.ring {
            Some(ring) if self.encrypt && view.classified() && message.keyid().is_none() => ring,
            _ => {
                return Ok(Protected {
                    message,
                    classes,
                    encrypted: Vec::new(),
                })
            }
        };
        let uncovered = view.tagged & !view.covered != 0 || !view.unknown.is_empty();
        let id = message.id().to_owned();
        let valid = !uncovered && serde_json::from_slice::<serde::de::IgnoredAny>(message.data()).is_ok();
        if valid {
            if let Some(hits) = super::scan::hits(message.data(), &view.rules) {
                // Fast path: seal each value's own text where it stands.
                if hits.is_empty() {
                    return Ok(Protected {
                        message,
                        classes,
                        encrypted: Vec::new(),
                    });
                }
                let data = message.data();
                let mut out = Vec::with_capacity(data.len() * 2);
                let mut copied = 0;
                let mut paths: SmallVec<[(usize, String); 8]> = SmallVec::new();
                for hit in hits {
                    out.extend_from_slice(&data[copied..hit.start]);
                    out.push(b'"');
                    out.extend_from_slice(
                        ring.seal(&data[hit.start..hit.end], &aad(&id, &hit.path))?
                            .as_bytes(),
                    );
                    out.push(b'"');
                    copied = hit.end;
                    paths.push((hit.rule, hit.path));
                }
                out.extend_from_slice(&data[copied..]);
                paths.sort_by_key(|(rule, _)| *rule);
                return Ok(Protected {
                    message: message.with_payload(Bytes::from(out), Some(ring.active())),
                    classes,
                    encrypted: paths.into_iter().map(|(_, p)| p).collect(),
                });
            }
        }
        let parsed = if valid {
            serde_json::from_slice::<Value>(message.data()).ok()
        } else {
            None
        };
        let (data, encrypted) = match parsed {
            Some(mut value) => {
                let mut paths = Vec::new();
                for rule in &view.rules {
                    walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                        let plain = serde_json::to_vec(v).map_err(|e| Error::Crypto(e.to_string()))?;
                        *v = Value::String(ring.seal(&plain, &aad(&id, path))?);
                        paths.push(path.to_owned());
                        Ok(false)
                    })?;
                }
                if paths.is_empty() {
                    return Ok(Protected {
                        message,
                        classes,
                        encrypted: paths,
                    });
                }
                (to_bytes(&value)?, paths)
            }
            None => {
                let sealed = ring.seal(message.data(), &aad(&id, ""))?;
                (Bytes::from(sealed.into_bytes()), vec![String::new()])
            }
        };
        Ok(Protected {
            message: message.with_payload(data, Some(ring.active())),
            classes,
            encrypted,
        })
    }

    /// What `message` becomes for a subscriber granted `grants`.
    pub(crate) fn deliver(&self, grants: ClassBits, filter: &Filter, message: &Message) -> Outcome {
        if !filter
            .headers
            .iter()
            .all(|(k, v)| message.header(k) == Some(v.as_str()))
        {
            return Outcome::Filtered;
        }
        let view = self.view(message);
        let keyid = message.keyid();
        let wanted = |classes: ClassBits| filter.classes == 0 || classes & filter.classes != 0;
        if !view.classified() && keyid.is_none() {
            if !wanted(0) {
                return Outcome::Filtered;
            }
            return deliver_as_is(message, 0);
        }
        let possible = view.tagged | view.covered;
        let ungranted = possible & !grants != 0 || !view.unknown.is_empty();
        if keyid.is_none() && !ungranted && filter.classes == 0 {
            // Everything it may hold is granted: no need to look inside.
            return deliver_as_is(message, possible);
        }
        match self.open_and_mask(grants, &view, message) {
            Ok(Masked::NotJson(data)) => {
                if !wanted(possible) {
                    Outcome::Filtered
                } else if ungranted {
                    Outcome::Withhold {
                        classes: possible,
                        reason: "the payload is not JSON, so its classified fields cannot be masked".into(),
                    }
                } else {
                    deliver_data(message, data, possible, Vec::new(), 0)
                }
            }
            Ok(Masked::Json {
                body,
                decrypted_payload,
                present,
                masked,
                masked_classes,
                changed,
            }) => {
                if !wanted(present) {
                    return Outcome::Filtered;
                }
                let uncovered = view.tagged & !grants & !view.covered;
                if uncovered != 0 || !view.unknown.is_empty() {
                    let mut names = self.policy.names(uncovered);
                    names.extend(view.unknown.iter().cloned());
                    return Outcome::Withhold {
                        classes: present,
                        reason: format!(
                            "the message is classified {} and no field rule says where, so nothing can be masked",
                            names.join(",")
                        ),
                    };
                }
                if !changed {
                    return match decrypted_payload {
                        Some(data) => deliver_data(message, data, present, Vec::new(), 0),
                        None => deliver_as_is(message, present),
                    };
                }
                match body.into_bytes() {
                    Ok(data) => deliver_data(message, data, present, masked, masked_classes),
                    Err(error) => Outcome::Failed {
                        classes: present,
                        error,
                    },
                }
            }
            Err(error) => Outcome::Failed {
                classes: possible,
                error,
            },
        }
    }

    /// Decrypts (when `keyid` is set) and masks the fields `grants` does not cover.
    fn open_and_mask(&self, grants: ClassBits, view: &View<'_>, message: &Message) -> Result<Masked> {
        let mut data = message.data().clone();
        let mut decrypted_payload = false;
        let keyid = message.keyid();
        let ring = match (keyid, &self.ring) {
            (Some(kid), None) => {
                return Err(Error::Crypto(format!(
                    "message {} is encrypted with key {kid:?}, but this bus has no key ring",
                    message.id()
                )))
            }
            (_, ring) => ring.as_ref(),
        };
        if let (Some(kid), Some(ring)) = (keyid, ring) {
            if data.starts_with(CIPHERTEXT_PREFIX.as_bytes()) {
                let sealed = std::str::from_utf8(&data)
                    .map_err(|_| Error::Crypto(format!("payload of message {} is not text", message.id())))?;
                let what = format!("payload of message {}", message.id());
                data = Bytes::from(ring.open(kid, sealed, &aad(message.id(), ""), &what)?);
                decrypted_payload = true;
            }
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_err() {
            return Ok(Masked::NotJson(data));
        }
        // Fast path: decrypt and mask values where they stand in the text.
        let fields_encrypted = match (keyid, ring) {
            (Some(kid), Some(ring)) if !decrypted_payload => Some((kid, ring)),
            _ => None,
        };
        let opened = match fields_encrypted {
            Some((kid, ring)) => open_fields(kid, ring, message, &data, &view.rules)?,
            None => Some((data.clone(), false)),
        };
        if let Some((plain, any_opened)) = opened {
            if let Some(hits) = super::scan::hits(&plain, &view.rules) {
                let drops = hits.iter().any(|h| {
                    let rule = view.rules[h.rule];
                    rule.class & grants == 0 && rule.action == Action::Drop
                });
                if !drops {
                    let decrypted = (decrypted_payload || any_opened).then(|| plain.clone());
                    return self.splice(grants, view, plain, hits, decrypted);
                }
            }
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(&data) else {
            return Ok(Masked::NotJson(data));
        };
        let mut changed = false;
        if let (Some(kid), Some(ring), false) = (keyid, ring, decrypted_payload) {
            for rule in view.rules.iter().rev() {
                walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                    if let Value::String(s) = v {
                        if s.starts_with(CIPHERTEXT_PREFIX) {
                            let what = format!("field {path} of message {}", message.id());
                            let plain = ring.open(kid, s, &aad(message.id(), path), &what)?;
                            *v = serde_json::from_slice(&plain)
                                .map_err(|_| Error::Crypto(format!("{what} decrypts to no JSON value")))?;
                            changed = true;
                        }
                    }
                    Ok(false)
                })?;
            }
        }
        let mut present = view.tagged;
        let mut masked = Vec::new();
        let mut masked_classes = 0;
        for rule in &view.rules {
            let granted = rule.class & grants != 0;
            walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                present |= rule.class;
                if granted {
                    return Ok(false);
                }
                masked.push(path.to_owned());
                masked_classes |= rule.class;
                self.mask(&rule.action, v)
            })?;
        }
        changed |= !masked.is_empty();
        Ok(Masked::Json {
            body: Body::Tree(value),
            decrypted_payload: decrypted_payload.then_some(data),
            present,
            masked,
            masked_classes,
            changed,
        })
    }

    /// Masks the values `hits` found in `data` (no drop among them, none nested) by
    /// replacing their bytes; everything else is copied as it was.
    fn splice(
        &self,
        grants: ClassBits,
        view: &View<'_>,
        data: Bytes,
        hits: Vec<super::scan::Hit>,
        decrypted: Option<Bytes>,
    ) -> Result<Masked> {
        let mut present = view.tagged;
        let mut masked_classes = 0;
        let mut masked: SmallVec<[(usize, String); 8]> = SmallVec::new();
        let mut out = Vec::with_capacity(data.len() + 64 * hits.len());
        let mut copied = 0;
        for hit in hits {
            let rule = view.rules[hit.rule];
            present |= rule.class;
            if rule.class & grants != 0 {
                continue;
            }
            masked_classes |= rule.class;
            let raw = &data[hit.start..hit.end];
            let mut value = match std::str::from_utf8(raw) {
                Ok(s) if s.len() >= 2 && s.starts_with('"') && !s.contains('\\') => {
                    Value::String(s[1..s.len() - 1].to_owned())
                }
                _ => serde_json::from_slice(raw)
                    .map_err(|e| Error::Decode(format!("masking {}: {e}", hit.path)))?,
            };
            self.mask(&rule.action, &mut value)?;
            out.extend_from_slice(&data[copied..hit.start]);
            serde_json::to_writer(&mut out, &value).map_err(|e| Error::Decode(e.to_string()))?;
            copied = hit.end;
            masked.push((hit.rule, hit.path));
        }
        out.extend_from_slice(&data[copied..]);
        // The audit names masked fields rule by rule, as the tree path finds them.
        masked.sort_by_key(|(rule, _)| *rule);
        let changed = !masked.is_empty();
        Ok(Masked::Json {
            body: Body::Text(Bytes::from(out)),
            decrypted_payload: decrypted,
            present,
            masked: masked.into_iter().map(|(_, p)| p).collect(),
            masked_classes,
            changed,
        })
    }

    /// Masks one value in place; `Ok(true)` asks for it to be removed.
    fn mask(&self, action: &Action, v: &mut Value) -> Result<bool> {
        let replacement = match action {
            Action::Drop => return Ok(true),
            Action::Redact => self.policy.redaction.clone(),
            Action::Hash => {
                let ring = self.ring.as_ref().ok_or_else(|| {
                    Error::Crypto("a hash rule needs a key ring, and this bus has none".into())
                })?;
                match &*v {
                    Value::String(s) => ring.hash_hex(s.as_bytes()),
                    other => {
                        ring.hash_hex(&serde_json::to_vec(other).map_err(|e| Error::Crypto(e.to_string()))?)
                    }
                }
            }
            Action::Partial(keep) => match &*v {
                Value::String(s) => partial(s, *keep),
                Value::Number(_) | Value::Bool(_) => partial(&v.to_string(), *keep),
                _ => self.policy.redaction.clone(),
            },
        };
        *v = Value::String(replacement);
        Ok(false)
    }
}

/// Replaces each ciphertext that `rules` reach in `data` by its plaintext JSON text.
/// `None` sends the caller to the tree path (nested matches, escaped ciphertext); the
/// flag says whether any ciphertext was there to open.
fn open_fields(
    kid: &str,
    ring: &KeyRing,
    message: &Message,
    data: &Bytes,
    rules: &[&Rule],
) -> Result<Option<(Bytes, bool)>> {
    let Some(hits) = super::scan::hits(data, rules) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(data.len());
    let mut copied = 0;
    for hit in hits {
        let raw = &data[hit.start..hit.end];
        if !(raw.len() > CIPHERTEXT_PREFIX.len() + 2
            && raw[0] == b'"'
            && raw[1..].starts_with(CIPHERTEXT_PREFIX.as_bytes()))
        {
            continue;
        }
        if raw.contains(&b'\\') {
            return Ok(None);
        }
        let sealed = std::str::from_utf8(&raw[1..raw.len() - 1]).map_err(|e| Error::Crypto(e.to_string()))?;
        let what = format!("field {} of message {}", hit.path, message.id());
        let plain = ring.open(kid, sealed, &aad(message.id(), &hit.path), &what)?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&plain).is_err() {
            return Err(Error::Crypto(format!("{what} decrypts to no JSON value")));
        }
        out.extend_from_slice(&data[copied..hit.start]);
        out.extend_from_slice(&plain);
        copied = hit.end;
    }
    out.extend_from_slice(&data[copied..]);
    Ok(Some((Bytes::from(out), copied > 0)))
}

enum Masked {
    NotJson(Bytes),
    Json {
        body: Body,
        /// The payload's plaintext, when it was encrypted whole.
        decrypted_payload: Option<Bytes>,
        present: ClassBits,
        masked: Vec<String>,
        masked_classes: ClassBits,
        changed: bool,
    },
}

/// A masked JSON payload: a tree to serialise, or text already spliced.
enum Body {
    Tree(Value),
    Text(Bytes),
}

impl Body {
    fn into_bytes(self) -> Result<Bytes> {
        match self {
            Body::Tree(value) => to_bytes(&value),
            Body::Text(bytes) => Ok(bytes),
        }
    }
}

fn deliver_as_is(message: &Message, classes: ClassBits) -> Outcome {
    Outcome::Deliver {
        message: message.clone(),
        classes,
        masked: Vec::new(),
        masked_classes: 0,
    }
}

fn deliver_data(
    message: &Message,
    data: Bytes,
    classes: ClassBits,
    masked: Vec<String>,
    masked_classes: ClassBits,
) -> Outcome {
    // What is delivered is plaintext or masked: it no longer carries a key id, so
    // forwarding it republishes (and re-encrypts) it rather than passing it as ciphertext.
    Outcome::Deliver {
        message: message.with_payload(data, None),
        classes,
        masked,
        masked_classes,
    }
}

fn to_bytes(value: &Value) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Decode(format!("re-encoding a masked payload: {e}")))
}

/// `keep` last characters of `s`, each one before them replaced by `*`; all `*` when
/// `s` has no more than `keep` characters.
pub(crate) fn partial(s: &str, keep: usize) -> String {
    let n = s.chars().count();
    if n <= keep {
        return "*".repeat(n);
    }
    let mut out = "*".repeat(n - keep);
    out.extend(s.chars().skip(n - keep));
    out
}

/// Calls `f` on every value that `tokens` reaches, with its concrete JSON Pointer;
/// `f` returning `Ok(true)` removes that value from its object or array.
pub(crate) fn walk<F>(value: &mut Value, tokens: &[Tok], path: &mut String, f: &mut F) -> Result<()>
where
    F: FnMut(&mut Value, &str) -> Result<bool>,
{
    let Some((tok, rest)) = tokens.split_first() else {
        return Ok(());
    };
    let len = path.len();
    match value {
        Value::Object(map) => {
            let mut remove: SmallVec<[String; 2]> = SmallVec::new();
            let mut visit = |key: &String, child: &mut Value, path: &mut String| -> Result<()> {
                path.push('/');
                push_escaped(path, key);
                if rest.is_empty() {
                    if f(child, path)? {
                        remove.push(key.clone());
                    }
                } else {
                    walk(child, rest, path, f)?;
                }
                path.truncate(len);
                Ok(())
            };
            match tok {
                Tok::Any => {
                    for (key, child) in map.iter_mut() {
                        visit(key, child, path)?;
                    }
                }
                Tok::Key(key) => {
                    if let Some(child) = map.get_mut(key) {
                        visit(key, child, path)?;
                    }
                }
            }
            for key in remove {
                map.shift_remove(&key);
            }
        }
        Value::Array(items) => {
            let indices: SmallVec<[usize; 1]> = match tok {
                Tok::Any => (0..items.len()).collect(),
                Tok::Key(key) => match array_index(key) {
                    Some(i) if i < items.len() => SmallVec::from_elem(i, 1),
                    _ => SmallVec::new(),
                },
            };
            let mut remove: SmallVec<[usize; 2]> = SmallVec::new();
            for i in indices {
                use std::fmt::Write;
                let _ = write!(path, "/{i}");
                if rest.is_empty() {
                    if f(&mut items[i], path)? {
                        remove.push(i);
                    }
                } else {
                    walk(&mut items[i], rest, path, f)?;
                }
                path.truncate(len);
            }
            for i in remove.into_iter().rev() {
                items.remove(i);
            }
        }
        _ => {}
    }
    Ok(())
}

/// A canonical array index: digits without a leading zero (RFC 6901).
pub(crate) fn array_index(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    key.parse().ok()
}

pub(crate) fn push_escaped(path: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::parse_pointer;

    #[test]
    fn partial_keeps_the_last_characters() {
        assert_eq!(partial("123-45-6789", 4), "*******6789");
        assert_eq!(partial("Zoë Ångström", 3), "*********röm");
        assert_eq!(partial("abc", 3), "***");
        assert_eq!(partial("", 2), "");
        assert_eq!(partial("abc", 0), "***");
    }

    #[test]
    fn walk_visits_wildcards_and_removes_in_arrays_and_objects() {
        let mut v: Value = serde_json::json!({"a": [{"x": 1, "y": 2}, {"x": 3}, 5], "b/c": {"x": 9}});
        let mut seen = Vec::new();
        walk(
            &mut v,
            &parse_pointer("/*/*/x").unwrap(),
            &mut String::new(),
            &mut |_, p| {
                seen.push(p.to_owned());
                Ok(false)
            },
        )
        .unwrap();
        assert_eq!(seen, ["/a/0/x", "/a/1/x"]);
        seen.clear();
        walk(
            &mut v,
            &parse_pointer("/*/x").unwrap(),
            &mut String::new(),
            &mut |_, p| {
                seen.push(p.to_owned());
                Ok(true)
            },
        )
        .unwrap();
        assert_eq!(seen, ["/b~1c/x"]);
        walk(
            &mut v,
            &parse_pointer("/a/*").unwrap(),
            &mut String::new(),
            &mut |v, _| Ok(v.is_object()),
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"a": [5], "b/c": {}}));
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("10"), Some(10));
    }
}
