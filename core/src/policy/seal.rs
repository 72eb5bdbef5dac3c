//! What the policy does to a message before it leaves the publisher: classified fields
//! (or the whole payload) and headers encrypted under the subject, or a message that
//! arrives with a `keyid` checked to be ciphertext already. Pure functions of the policy,
//! the key ring and the message, like the delivery side in `mask.rs`.

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;

use super::crypto::{KeyRing, CIPHERTEXT_PREFIX};
use super::mask::{aad, header_path, to_bytes, Engine, View};
use super::model::ClassBits;
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::json_pointer::walk;

/// What publishing did to a message.
pub(crate) struct Protected {
    pub(crate) message: Message,
    pub(crate) classes: ClassBits,
    /// Pointers of the fields encrypted (`""` for the whole payload).
    pub(crate) encrypted: Vec<String>,
}

impl Engine {
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
}
