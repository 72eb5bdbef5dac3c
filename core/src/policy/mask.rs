//! What the policy does to one message: encryption before it leaves the publisher, and,
//! per subscriber, decryption, filtering, masking or withholding. Pure functions of the
//! policy, the key ring and the message; the bus wrapper and the audit log sit around them.

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;

use super::crypto::{KeyRing, CIPHERTEXT_PREFIX};
use super::model::{Action, ClassBits, Compiled, HeaderRuleC, Rule};
use crate::envelope::{Message, DLQ_SUBJECT};
use crate::error::{Error, Result};
use crate::json_pointer::{array_index, push_escaped, Tok};

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

/// The policy's view of one message: rules for its subjects and its declared classes.
struct View<'a> {
    rules: SmallVec<[&'a Rule; 8]>,
    headers: SmallVec<[&'a HeaderRuleC; 4]>,
    /// Classes of the `classification` attribute.
    tagged: ClassBits,
    /// Classes that applicable rules (field and header) can mask.
    covered: ClassBits,
    /// Names in `classification` the policy does not declare (never granted).
    unknown: Vec<String>,
    /// The subject bound into the associated data of its ciphertexts.
    aad_subject: &'a str,
}

impl View<'_> {
    fn classified(&self) -> bool {
        self.tagged != 0 || !self.unknown.is_empty() || !self.rules.is_empty() || !self.headers.is_empty()
    }
}

/// Associated data of a ciphertext: the subject it was sealed for, the message id and
/// the location (a JSON Pointer, `""` for the whole payload, `header:<name>` for a
/// header), so a ciphertext moved to another subject, message or place fails to open.
fn aad(subject: &str, message_id: &str, path: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(20 + subject.len() + message_id.len() + path.len());
    a.extend_from_slice(b"busbar:aead:v2\0");
    a.extend_from_slice(subject.as_bytes());
    a.push(0);
    a.extend_from_slice(message_id.as_bytes());
    a.push(0);
    a.extend_from_slice(path.as_bytes());
    a
}

fn header_path(name: &str) -> String {
    format!("header:{}", name.to_ascii_lowercase())
}

/// Whether `data` holds busbar's ciphertext prefix anywhere.
fn holds_ciphertext(data: &[u8]) -> bool {
    memchr::memmem::find(data, CIPHERTEXT_PREFIX.as_bytes()).is_some()
}

fn is_sealed_string(raw: &[u8]) -> bool {
    raw.len() > CIPHERTEXT_PREFIX.len() + 2
        && raw[0] == b'"'
        && raw[1..].starts_with(CIPHERTEXT_PREFIX.as_bytes())
}

impl Engine {
    /// The view of `message` under `subject` (its own, or the subject a reply answers):
    /// rules of that subject, of the message's own subject, and of the original subject
    /// a dead letter names apply; ciphertexts are bound to the original subject when
    /// there is one, else to `subject`.
    fn view<'a>(&'a self, message: &'a Message, subject: &'a str) -> View<'a> {
        let origin = message.header(DLQ_SUBJECT);
        let own = message.subject();
        let applies =
            |f: &dyn Fn(&str) -> bool| f(subject) || (own != subject && f(own)) || origin.is_some_and(f);
        let rules: SmallVec<[&Rule; 8]> = self
            .policy
            .rules
            .iter()
            .filter(|r| applies(&|s| r.applies_to(s)))
            .collect();
        let headers: SmallVec<[&HeaderRuleC; 4]> = self
            .policy
            .header_rules
            .iter()
            .filter(|r| applies(&|s| r.applies_to(s)))
            .collect();
        let (tagged, unknown) = self.policy.parse_classes(message.classification());
        let covered = rules.iter().fold(0, |a, r| a | r.class) | headers.iter().fold(0, |a, r| a | r.class);
        View {
            rules,
            headers,
            tagged,
            covered,
            unknown,
            aad_subject: origin.unwrap_or(subject),
        }
    }

    /// The applicable header rule of each user header, in header order.
    fn header_hits<'m>(view: &View<'_>, message: &'m Message) -> SmallVec<[(&'m str, usize); 2]> {
        if view.headers.is_empty() {
            return SmallVec::new();
        }
        message
            .headers()
            .keys()
            .filter_map(|name| {
                view.headers
                    .iter()
                    .position(|r| r.name.eq_ignore_ascii_case(name))
                    .map(|i| (name.as_str(), i))
            })
            .collect()
    }

    /// Encrypts the classified parts of `message` when encryption is on, bound to
    /// `subject` (its own, or the subject a reply answers). Fields that rules locate are
    /// encrypted where they stand when every class of the `classification` attribute is
    /// located in the payload; otherwise (a tag with nothing located, an undeclared
    /// class, a payload that is not JSON) the payload is encrypted whole. Headers that
    /// header rules name are encrypted too. A message that arrives with a `keyid` is
    /// passed on only if everything the policy would encrypt is ciphertext already;
    /// classified content in clear under a publisher's `keyid` is refused.
    pub(crate) fn protect(&self, message: Message, subject: &str) -> Result<Protected> {
        let view = self.view(&message, subject);
        let classes = view.tagged | view.covered;
        let unchanged = |message| {
            Ok(Protected {
                message,
                classes,
                encrypted: Vec::new(),
            })
        };
        let ring = match &self.ring {
            Some(ring) if self.encrypt && view.classified() => ring,
            _ => return unchanged(message.clone()),
        };
        if message.keyid().is_some() {
            self.check_sealed(&view, &message)?;
            return unchanged(message.clone());
        }
        let id = message.id();
        let aad_subject = view.aad_subject;
        // Headers first: each named one sealed in place.
        let mut encrypted = Vec::new();
        let header_hits = Self::header_hits(&view, &message);
        let headers = if header_hits.is_empty() {
            None
        } else {
            let mut headers = message.headers().clone();
            for (name, _) in &header_hits {
                let path = header_path(name);
                let value = headers.get_mut(*name).expect("a header just seen");
                *value = ring.seal(value.as_bytes(), &aad(aad_subject, id, &path))?;
                encrypted.push(path);
            }
            Some(headers)
        };
        let (data, mut fields) = self.seal_payload(ring, &view, &message)?;
        fields.append(&mut encrypted);
        if fields.is_empty() {
            return unchanged(message.clone());
        }
        let mut sealed = message.with_payload(
            data.unwrap_or_else(|| message.data().clone()),
            Some(ring.active()),
        );
        if let Some(headers) = headers {
            sealed = sealed.with_headers(headers);
        }
        Ok(Protected {
            message: sealed,
            classes,
            encrypted: fields,
        })
    }

    /// The payload with its classified parts sealed (`None`: unchanged) and their pointers.
    fn seal_payload(
        &self,
        ring: &KeyRing,
        view: &View<'_>,
        message: &Message,
    ) -> Result<(Option<Bytes>, Vec<String>)> {
        let id = message.id();
        let aad_subject = view.aad_subject;
        let whole = || -> Result<(Option<Bytes>, Vec<String>)> {
            let sealed = ring.seal(message.data(), &aad(aad_subject, id, ""))?;
            Ok((Some(Bytes::from(sealed.into_bytes())), vec![String::new()]))
        };
        if !view.unknown.is_empty() || (view.tagged == 0 && view.rules.is_empty()) {
            return if view.unknown.is_empty() {
                Ok((None, Vec::new()))
            } else {
                whole()
            };
        }
        let data = message.data();
        if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
            return whole();
        }
        if let Some(hits) = super::scan::hits(data, &view.rules) {
            // Fast path: seal each value's own text where it stands.
            let located = hits.iter().fold(0, |a, h| a | view.rules[h.rule].class);
            if view.tagged & !located != 0 {
                return whole();
            }
            if hits.is_empty() {
                return Ok((None, Vec::new()));
            }
            let mut out = Vec::with_capacity(data.len() * 2);
            let mut copied = 0;
            let mut paths: SmallVec<[(usize, String); 8]> = SmallVec::new();
            for hit in hits {
                out.extend_from_slice(&data[copied..hit.start]);
                out.push(b'"');
                out.extend_from_slice(
                    ring.seal(&data[hit.start..hit.end], &aad(aad_subject, id, &hit.path))?
                        .as_bytes(),
                );
                out.push(b'"');
                copied = hit.end;
                paths.push((hit.rule, hit.path));
            }
            out.extend_from_slice(&data[copied..]);
            paths.sort_by_key(|(rule, _)| *rule);
            return Ok((
                Some(Bytes::from(out)),
                paths.into_iter().map(|(_, p)| p).collect(),
            ));
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
            return whole();
        };
        let mut paths = Vec::new();
        let mut located = 0;
        for rule in &view.rules {
            walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                let plain = serde_json::to_vec(v).map_err(|e| Error::Crypto(e.to_string()))?;
                *v = Value::String(ring.seal(&plain, &aad(aad_subject, id, path))?);
                paths.push(path.to_owned());
                located |= rule.class;
                Ok(false)
            })?;
        }
        if view.tagged & !located != 0 {
            return whole();
        }
        if paths.is_empty() {
            return Ok((None, paths));
        }
        Ok((Some(to_bytes(&value)?), paths))
    }

    /// A message published with a `keyid` of its own: everything the policy would encrypt
    /// must be ciphertext already (a forward of a sealed message), else it is refused.
    fn check_sealed(&self, view: &View<'_>, message: &Message) -> Result<()> {
        let refuse = |what: &str| {
            Err(Error::InvalidArgument(format!(
                "message {} carries keyid {:?} but {what} is classified and in clear; the policy layer sets keyid when it encrypts, so publish without one",
                message.id(),
                message.keyid().unwrap_or_default()
            )))
        };
        for (name, _) in Self::header_hits(view, message) {
            if !message
                .header(name)
                .is_some_and(|v| v.starts_with(CIPHERTEXT_PREFIX))
            {
                return refuse(&format!("header {name:?}"));
            }
        }
        let data = message.data();
        if data.starts_with(CIPHERTEXT_PREFIX.as_bytes()) {
            return Ok(());
        }
        if !view.unknown.is_empty() {
            return refuse("the payload");
        }
        if view.tagged == 0 && view.rules.is_empty() {
            return Ok(());
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
            return refuse("the payload");
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
            return refuse("the payload");
        };
        let mut located = 0;
        let mut clear = None;
        for rule in &view.rules {
            walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                located |= rule.class;
                if !matches!(v, Value::String(s) if s.starts_with(CIPHERTEXT_PREFIX)) {
                    clear.get_or_insert_with(|| path.to_owned());
                }
                Ok(false)
            })?;
        }
        if let Some(path) = clear {
            return refuse(&format!("field {path}"));
        }
        if view.tagged & !located != 0 {
            return refuse("the payload");
        }
        Ok(())
    }

    /// What `message` becomes for a subscriber granted `grants`; `subject` is the
    /// message's own subject, or for a reply the subject of the request it answers.
    pub(crate) fn deliver(
        &self,
        grants: ClassBits,
        filter: &Filter,
        message: &Message,
        subject: &str,
    ) -> Outcome {
        if !filter
            .headers
            .iter()
            .all(|(k, v)| message.header(k) == Some(v.as_str()))
        {
            return Outcome::Filtered;
        }
        let view = self.view(message, subject);
        let keyid = message.keyid();
        let wanted = |classes: ClassBits| filter.classes == 0 || classes & filter.classes != 0;
        let possible = view.tagged | view.covered;
        if keyid.is_none() {
            // Ciphertext whose keyid was stripped is an error, never data.
            let stripped = message.data().starts_with(CIPHERTEXT_PREFIX.as_bytes())
                || (view.classified()
                    && (holds_ciphertext(message.data())
                        || Self::header_hits(&view, message).iter().any(|(n, _)| {
                            message
                                .header(n)
                                .is_some_and(|v| v.starts_with(CIPHERTEXT_PREFIX))
                        })));
            if stripped {
                return Outcome::Failed {
                    classes: possible,
                    error: Error::Crypto(format!(
                        "message {} holds ciphertext but no keyid: it cannot be opened, and is not data",
                        message.id()
                    )),
                };
            }
        }
        if !view.classified() && keyid.is_none() {
            if !wanted(0) {
                return Outcome::Filtered;
            }
            return deliver_as_is(message, 0);
        }
        let ungranted = possible & !grants != 0 || !view.unknown.is_empty();
        if keyid.is_none() && !ungranted && filter.classes == 0 {
            // Everything it may hold is granted: no need to look inside.
            return deliver_as_is(message, possible);
        }
        let headers = match self.open_and_mask_headers(grants, &view, message) {
            Ok(h) => h,
            Err(error) => {
                return Outcome::Failed {
                    classes: possible,
                    error,
                }
            }
        };
        let outcome = match self.open_and_mask(grants, &view, message) {
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
                located,
                masked,
                masked_classes,
                changed,
            }) => {
                let present = present | headers.as_ref().map_or(0, |h| h.present);
                if !wanted(present) {
                    return Outcome::Filtered;
                }
                let unlocated = view.tagged & !grants & !located;
                if unlocated != 0 || !view.unknown.is_empty() {
                    let mut names = self.policy.names(unlocated);
                    names.extend(view.unknown.iter().cloned());
                    return Outcome::Withhold {
                        classes: present,
                        reason: format!(
                            "the message is classified {} and no field rule locates it in the payload, so nothing can be masked",
                            names.join(",")
                        ),
                    };
                }
                let headers_changed = headers.as_ref().is_some_and(|h| h.changed);
                if !changed && !headers_changed {
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
        };
        match (outcome, headers) {
            (
                Outcome::Deliver {
                    message: delivered,
                    classes,
                    mut masked,
                    masked_classes,
                },
                Some(h),
            ) if h.changed => {
                masked.extend(h.masked);
                Outcome::Deliver {
                    message: delivered
                        .with_payload(delivered.data().clone(), None)
                        .with_headers(h.headers),
                    classes: classes | h.present,
                    masked,
                    masked_classes: masked_classes | h.masked_classes,
                }
            }
            (outcome, _) => outcome,
        }
    }

    /// Decrypts (when `keyid` is set) and masks the headers that header rules name;
    /// `None` when no rule names a header of the message.
    fn open_and_mask_headers(
        &self,
        grants: ClassBits,
        view: &View<'_>,
        message: &Message,
    ) -> Result<Option<MaskedHeaders>> {
        let hits = Self::header_hits(view, message);
        if hits.is_empty() {
            return Ok(None);
        }
        let mut out = MaskedHeaders {
            headers: message.headers().clone(),
            present: 0,
            masked: Vec::new(),
            masked_classes: 0,
            changed: false,
        };
        for (name, i) in hits {
            let rule = view.headers[i];
            let path = header_path(name);
            let mut value = message.header(name).unwrap_or_default().to_owned();
            if value.starts_with(CIPHERTEXT_PREFIX) {
                let (Some(kid), Some(ring)) = (message.keyid(), &self.ring) else {
                    return Err(Error::Crypto(format!(
                        "header {name} of message {} is encrypted, but there is no keyid or key ring to open it",
                        message.id()
                    )));
                };
                let what = format!("header {name} of message {}", message.id());
                let plain = ring.open(kid, &value, &aad(view.aad_subject, message.id(), &path), &what)?;
                value = String::from_utf8(plain)
                    .map_err(|_| Error::Crypto(format!("{what} decrypts to no text")))?;
                out.changed = true;
            }
            out.present |= rule.class;
            if rule.class & grants == 0 {
                out.masked.push(path);
                out.masked_classes |= rule.class;
                out.changed = true;
                let mut v = Value::String(value);
                if self.mask(&rule.action, &mut v)? {
                    out.headers.remove(name);
                    continue;
                }
                value = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
            }
            out.headers.insert(name.to_owned(), value);
        }
        Ok(Some(out))
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
                data =
                    Bytes::from(ring.open(kid, sealed, &aad(view.aad_subject, message.id(), ""), &what)?);
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
            Some((kid, ring)) => open_fields(kid, ring, message, view.aad_subject, &data, &view.rules)?,
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
                            let plain =
                                ring.open(kid, s, &aad(view.aad_subject, message.id(), path), &what)?;
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
        let mut located = 0;
        let mut masked = Vec::new();
        let mut masked_classes = 0;
        for rule in &view.rules {
            let granted = rule.class & grants != 0;
            walk(&mut value, &rule.tokens, &mut String::new(), &mut |v, path| {
                present |= rule.class;
                located |= rule.class;
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
            located,
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
        let mut located = 0;
        let mut masked_classes = 0;
        let mut masked: SmallVec<[(usize, String); 8]> = SmallVec::new();
        let mut out = Vec::with_capacity(data.len() + 64 * hits.len());
        let mut copied = 0;
        for hit in hits {
            let rule = view.rules[hit.rule];
            present |= rule.class;
            located |= rule.class;
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
            located,
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
    aad_subject: &str,
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
        if !is_sealed_string(raw) {
            continue;
        }
        if raw.contains(&b'\\') {
            return Ok(None);
        }
        let sealed = std::str::from_utf8(&raw[1..raw.len() - 1]).map_err(|e| Error::Crypto(e.to_string()))?;
        let what = format!("field {} of message {}", hit.path, message.id());
        let plain = ring.open(kid, sealed, &aad(aad_subject, message.id(), &hit.path), &what)?;
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
        /// Classes of the rules that located a value in the payload.
        located: ClassBits,
        masked: Vec<String>,
        masked_classes: ClassBits,
        changed: bool,
    },
}

/// The headers of a message after header rules: opened, masked or dropped.
struct MaskedHeaders {
    headers: crate::envelope::Headers,
    present: ClassBits,
    masked: Vec<String>,
    masked_classes: ClassBits,
    changed: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_pointer::parse_pointer;

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
    }
}
