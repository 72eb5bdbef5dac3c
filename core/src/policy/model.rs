//! The policy: classes, field rules, restricted subjects, role grants, and principals.
//! Built in code or read from JSON; compiled once into the form delivery uses.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::json_pointer::{parse_pointer, Tok};
use crate::subject::{patterns_overlap, validate_pattern};

/// What happens to a classified field that a subscriber's roles do not grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replaced by the policy's redaction text (default `[REDACTED]`).
    Redact,
    /// Replaced by the lowercase hex HMAC-SHA-256 of the value under the key ring's hashing
    /// key: equal values give equal hashes, so data stays joinable. A string hashes its
    /// UTF-8 bytes; any other value its compact JSON text.
    Hash,
    /// Keeps the last N characters (Unicode scalar values) and replaces each one before
    /// them with `*`. A value of N characters or fewer is masked entirely. Numbers and
    /// booleans are taken as their JSON text; objects, arrays and null are redacted.
    Partial(usize),
    /// Removes the field (or array element).
    Drop,
}

/// One field rule: where a class sits in a JSON payload and how to mask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    /// JSON Pointer (RFC 6901); a `*` token matches any key or array index.
    pub path: String,
    /// The class of the field.
    pub class: String,
    /// How it is masked for a subscriber without the class.
    pub action: Action,
    /// Subject patterns the rule applies to; empty means every subject.
    pub subjects: Vec<String>,
}

/// One header rule: a user header whose value is of a class, masked (or encrypted) like
/// a field of that class. Names compare without regard to ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// The header's name.
    pub name: String,
    /// The class of its value.
    pub class: String,
    /// How it is masked for a subscriber without the class (`drop` removes the header).
    pub action: Action,
    /// Subject patterns the rule applies to; empty means every subject.
    pub subjects: Vec<String>,
}

/// A restricted subject: subscribing to a pattern that can receive any subject matching
/// `subjects` requires one of `roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// Subject patterns that are restricted.
    pub subjects: Vec<String>,
    /// Roles allowed to subscribe to them.
    pub roles: Vec<String>,
}

/// Classes, field rules, restricted subjects and role grants (docs/design.md §6).
///
/// ```
/// use busbar::policy::{Action, Policy};
/// let policy = Policy::new()
///     .class("phi")
///     .field("/patient/name", "phi", Action::Redact)
///     .field("/patient/mrn", "phi", Action::Hash)
///     .restrict("phi.raw.>", ["clinician"])
///     .grant("clinician", ["phi"]);
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Declared classes, in order.
    pub classes: Vec<String>,
    /// The replacement text of `redact` (and of `partial` on a structure).
    pub redaction: String,
    /// Field rules, applied in order.
    pub fields: Vec<FieldRule>,
    /// Header rules.
    pub headers: Vec<HeaderRule>,
    /// Restricted subjects.
    pub restricted: Vec<Restriction>,
    /// Role → classes it is granted.
    pub grants: BTreeMap<String, Vec<String>>,
}

/// Default replacement text of `redact`.
pub const DEFAULT_REDACTION: &str = "[REDACTED]";

impl Default for Policy {
    fn default() -> Self {
        Policy {
            classes: Vec::new(),
            redaction: DEFAULT_REDACTION.to_owned(),
            fields: Vec::new(),
            headers: Vec::new(),
            restricted: Vec::new(),
            grants: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    classes: Vec<String>,
    #[serde(default)]
    redaction: Option<String>,
    #[serde(default)]
    fields: Vec<RuleFile>,
    #[serde(default)]
    headers: Vec<HeaderRuleFile>,
    #[serde(default)]
    restricted: Vec<RestrictionFile>,
    #[serde(default)]
    grants: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    path: String,
    class: String,
    action: String,
    #[serde(default)]
    keep: Option<usize>,
    #[serde(default)]
    subjects: OneOrMany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderRuleFile {
    name: String,
    class: String,
    action: String,
    #[serde(default)]
    keep: Option<usize>,
    #[serde(default)]
    subjects: OneOrMany,
}

fn parse_action(what: &str, action: &str, keep: Option<usize>) -> Result<Action> {
    match (action, keep) {
        ("redact", None) => Ok(Action::Redact),
        ("hash", None) => Ok(Action::Hash),
        ("drop", None) => Ok(Action::Drop),
        ("partial", Some(n)) => Ok(Action::Partial(n)),
        ("partial", None) => Err(Error::InvalidArgument(format!(
            "{what}: action partial needs \"keep\": N"
        ))),
        (a, _) => Err(Error::InvalidArgument(format!(
            "{what}: action {a:?} is not redact, hash, partial (with keep) or drop"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestrictionFile {
    subjects: OneOrMany,
    roles: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

impl Policy {
    /// An empty policy: nothing classified, nothing restricted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a policy from JSON:
    ///
    /// ```json
    /// {"classes": ["phi", "pii"],
    ///  "redaction": "[REDACTED]",
    ///  "fields": [{"path": "/patient/ssn", "class": "pii", "action": "partial", "keep": 4,
    ///              "subjects": ["patients.>"]}],
    ///  "restricted": [{"subjects": ["phi.raw.>"], "roles": ["clinician"]}],
    ///  "grants": {"clinician": ["phi", "pii"], "billing": ["pii"]}}
    /// ```
    /// `action` is `redact`, `hash`, `partial` (with `keep`) or `drop`; `subjects` is a
    /// pattern or a list of them. Errors name the offending entry.
    pub fn from_json(text: &str) -> Result<Self> {
        // Only an object is a policy: `[]` (which serde would read as an empty struct)
        // or `null` must not pass as "allow everything".
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("policy is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::InvalidArgument(
                "a policy is a JSON object ({\"classes\": [...], \"fields\": [...], ...})".into(),
            ));
        }
        let file: PolicyFile = serde_json::from_value(value)
            .map_err(|e| Error::InvalidArgument(format!("policy is not valid: {e}")))?;
        let mut policy = Policy {
            classes: file.classes,
            redaction: file.redaction.unwrap_or_else(|| DEFAULT_REDACTION.to_owned()),
            grants: file.grants,
            ..Policy::default()
        };
        for (i, r) in file.fields.into_iter().enumerate() {
            let action = parse_action(&format!("field rule {i} ({})", r.path), &r.action, r.keep)?;
            policy.fields.push(FieldRule {
                path: r.path,
                class: r.class,
                action,
                subjects: r.subjects.into_vec(),
            });
        }
        for (i, r) in file.headers.into_iter().enumerate() {
            let action = parse_action(&format!("header rule {i} ({})", r.name), &r.action, r.keep)?;
            policy.headers.push(HeaderRule {
                name: r.name,
                class: r.class,
                action,
                subjects: r.subjects.into_vec(),
            });
        }
        for r in file.restricted {
            policy.restricted.push(Restriction {
                subjects: r.subjects.into_vec(),
                roles: r.roles,
            });
        }
        policy.check()?;
        Ok(policy)
    }

    /// [`Policy::from_json`] of a file.
    pub fn from_file(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read policy {path:?}: {e}")))?;
        Self::from_json(&text)
    }

    /// Declares a class.
    pub fn class(mut self, name: &str) -> Self {
        if !self.classes.iter().any(|c| c == name) {
            self.classes.push(name.to_owned());
        }
        self
    }

    /// Adds a field rule for every subject.
    pub fn field(self, path: &str, class: &str, action: Action) -> Self {
        self.field_on::<&str>([], path, class, action)
    }

    /// Adds a field rule for the subjects matching `subjects`.
    pub fn field_on<S: Into<String>>(
        mut self,
        subjects: impl IntoIterator<Item = S>,
        path: &str,
        class: &str,
        action: Action,
    ) -> Self {
        self.fields.push(FieldRule {
            path: path.to_owned(),
            class: class.to_owned(),
            action,
            subjects: subjects.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Adds a header rule for every subject: the value of user header `name` is of `class`.
    pub fn header(self, name: &str, class: &str, action: Action) -> Self {
        self.header_on::<&str>([], name, class, action)
    }

    /// Adds a header rule for the subjects matching `subjects`.
    pub fn header_on<S: Into<String>>(
        mut self,
        subjects: impl IntoIterator<Item = S>,
        name: &str,
        class: &str,
        action: Action,
    ) -> Self {
        self.headers.push(HeaderRule {
            name: name.to_owned(),
            class: class.to_owned(),
            action,
            subjects: subjects.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Restricts subscribing to `pattern` to the given roles.
    pub fn restrict<S: Into<String>>(mut self, pattern: &str, roles: impl IntoIterator<Item = S>) -> Self {
        self.restricted.push(Restriction {
            subjects: vec![pattern.to_owned()],
            roles: roles.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Grants classes to a role (added to what it already has).
    pub fn grant<S: Into<String>>(mut self, role: &str, classes: impl IntoIterator<Item = S>) -> Self {
        self.grants
            .entry(role.to_owned())
            .or_default()
            .extend(classes.into_iter().map(Into::into));
        self
    }

    /// Sets the replacement text of `redact`.
    pub fn redaction(mut self, text: &str) -> Self {
        self.redaction = text.to_owned();
        self
    }

    /// Whether the policy is consistent: classes declared, paths and patterns valid.
    pub fn check(&self) -> Result<()> {
        Compiled::new(self).map(|_| ())
    }
}

/// Who a subscriber acts as: a name (for the audit log) and roles (for grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name recorded in the audit log.
    pub name: String,
    /// Roles, granted classes by the policy.
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal with roles.
    pub fn new<S: Into<String>>(name: &str, roles: impl IntoIterator<Item = S>) -> Self {
        Principal {
            name: name.to_owned(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// No roles: sees every classified field masked. What plain `subscribe` acts as.
    pub fn anonymous() -> Self {
        Principal::new::<&str>("anonymous", [])
    }
}

/// A set of declared classes, one bit each.
pub(crate) type ClassBits = u64;

/// A compiled header rule.
#[derive(Debug)]
pub(crate) struct HeaderRuleC {
    /// Lowercase name.
    pub(crate) name: String,
    pub(crate) class: ClassBits,
    pub(crate) action: Action,
    pub(crate) subjects: Vec<String>,
}

impl HeaderRuleC {
    pub(crate) fn applies_to(&self, subject: &str) -> bool {
        self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|p| crate::subject::matches_routed(p, subject))
    }
}

/// First token of the reply inboxes of both backends (`_INBOX.<bus>.<request>`).
pub(crate) const INBOX_PREFIX: &str = "_INBOX";

/// Whether `subject` is a reply-inbox subject.
pub(crate) fn is_inbox(subject: &str) -> bool {
    subject
        .strip_prefix(INBOX_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) tokens: Vec<Tok>,
    pub(crate) class: ClassBits,
    pub(crate) action: Action,
    pub(crate) subjects: Vec<String>,
}

impl Rule {
    pub(crate) fn applies_to(&self, subject: &str) -> bool {
        self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|p| crate::subject::matches_routed(p, subject))
    }
}

/// The policy in the form delivery uses.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) classes: Vec<String>,
    pub(crate) redaction: String,
    pub(crate) rules: Vec<Rule>,
    pub(crate) header_rules: Vec<HeaderRuleC>,
    pub(crate) restricted: Vec<(Vec<String>, Vec<String>)>,
    grants: BTreeMap<String, ClassBits>,
    pub(crate) has_hash: bool,
}

impl Compiled {
    pub(crate) fn new(p: &Policy) -> Result<Self> {
        if p.classes.len() > 64 {
            return Err(Error::InvalidArgument(format!(
                "a policy holds at most 64 classes, not {}",
                p.classes.len()
            )));
        }
        for (i, c) in p.classes.iter().enumerate() {
            if c.is_empty() || c.contains(',') || c.trim() != c {
                return Err(Error::InvalidArgument(format!(
                    "class {c:?} must be non-empty, without commas or surrounding spaces"
                )));
            }
            if p.classes[..i].contains(c) {
                return Err(Error::InvalidArgument(format!("class {c:?} is declared twice")));
            }
        }
        if p.redaction.is_empty() {
            return Err(Error::InvalidArgument(
                "the redaction text must not be empty (a redacted field would look like an empty value)"
                    .into(),
            ));
        }
        let bit = |class: &str, what: &str| -> Result<ClassBits> {
            match p.classes.iter().position(|c| c == class) {
                Some(i) => Ok(1 << i),
                None => Err(Error::InvalidArgument(format!(
                    "{what} names class {class:?}, which the policy does not declare (classes: {})",
                    p.classes.join(", ")
                ))),
            }
        };
        let mut rules = Vec::with_capacity(p.fields.len());
        for (i, r) in p.fields.iter().enumerate() {
            let what = format!("field rule {i} ({})", r.path);
            for s in &r.subjects {
                validate_pattern(s)?;
            }
            rules.push(Rule {
                tokens: parse_pointer(&r.path).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?,
                class: bit(&r.class, &what)?,
                action: r.action.clone(),
                subjects: r.subjects.clone(),
            });
        }
        let mut header_rules = Vec::with_capacity(p.headers.len());
        for (i, r) in p.headers.iter().enumerate() {
            let what = format!("header rule {i} ({})", r.name);
            for s in &r.subjects {
                validate_pattern(s)?;
            }
            if r.name.is_empty() || r.name.chars().any(|c| !c.is_ascii_graphic() || c == ':') {
                return Err(Error::InvalidArgument(format!(
                    "{what}: a header name is printable ASCII without ':' or spaces"
                )));
            }
            header_rules.push(HeaderRuleC {
                name: r.name.to_ascii_lowercase(),
                class: bit(&r.class, &what)?,
                action: r.action.clone(),
                subjects: r.subjects.clone(),
            });
        }
        let mut restricted = Vec::new();
        for r in &p.restricted {
            if r.subjects.is_empty() {
                return Err(Error::InvalidArgument(
                    "a restricted entry needs at least one subject pattern".into(),
                ));
            }
            for s in &r.subjects {
                validate_pattern(s)?;
            }
            restricted.push((r.subjects.clone(), r.roles.clone()));
        }
        let mut grants = BTreeMap::new();
        for (role, classes) in &p.grants {
            let mut bits = 0;
            for c in classes {
                bits |= bit(c, &format!("the grant to role {role:?}"))?;
            }
            grants.insert(role.clone(), bits);
        }
        Ok(Compiled {
            classes: p.classes.clone(),
            redaction: p.redaction.clone(),
            has_hash: rules.iter().any(|r| r.action == Action::Hash)
                || header_rules.iter().any(|r| r.action == Action::Hash),
            rules,
            header_rules,
            restricted,
            grants,
        })
    }

    /// The classes granted to any of `roles`.
    pub(crate) fn grants_of(&self, roles: &[String]) -> ClassBits {
        roles
            .iter()
            .filter_map(|r| self.grants.get(r))
            .fold(0, |a, b| a | b)
    }

    /// Bits of the declared classes in a `classification` attribute; the undeclared
    /// names come back separately (no role can be granted them).
    pub(crate) fn parse_classes(&self, attr: Option<&str>) -> (ClassBits, Vec<String>) {
        let mut bits = 0;
        let mut unknown = Vec::new();
        for name in attr
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match self.classes.iter().position(|c| c == name) {
                Some(i) => bits |= 1 << i,
                None => unknown.push(name.to_owned()),
            }
        }
        (bits, unknown)
    }

    /// Class names of `bits`, in declaration order.
    pub(crate) fn names(&self, bits: ClassBits) -> Vec<String> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Bits of the named classes; an undeclared name is an error.
    pub(crate) fn bits_of(&self, names: &[String]) -> Result<ClassBits> {
        let (bits, unknown) = self.parse_classes(Some(&names.join(",")));
        if let Some(u) = unknown.first() {
            return Err(Error::InvalidArgument(format!(
                "class {u:?} is not declared by the policy (classes: {})",
                self.classes.join(", ")
            )));
        }
        Ok(bits)
    }

    /// `Err(restricted pattern, roles needed)` when subscribing to `pattern` with `roles`
    /// is not allowed: it overlaps a restricted subject, or the dead-letter subjects
    /// `<prefix>.<restricted>` of one of `dlq_prefixes`.
    pub(crate) fn check_subscribe(
        &self,
        pattern: &str,
        roles: &[String],
        dlq_prefixes: &[String],
    ) -> Result<(), (String, Vec<String>)> {
        for (subjects, allowed) in &self.restricted {
            if roles.iter().any(|r| allowed.contains(r)) {
                continue;
            }
            for s in subjects {
                if patterns_overlap(pattern, s) {
                    return Err((s.clone(), allowed.clone()));
                }
                for prefix in dlq_prefixes {
                    let derived = format!("{prefix}.{s}");
                    if patterns_overlap(pattern, &derived) {
                        return Err((derived, allowed.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// `Some(restricted pattern, roles needed)` when a message on `subject` may not reach
    /// a principal with `roles`.
    pub(crate) fn restricted_for(&self, subject: &str, roles: &[String]) -> Option<(String, Vec<String>)> {
        for (subjects, allowed) in &self.restricted {
            if roles.iter().any(|r| allowed.contains(r)) {
                continue;
            }
            if let Some(s) = subjects
                .iter()
                .find(|s| crate::subject::matches_routed(s, subject))
            {
                return Some((s.clone(), allowed.clone()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_patterns() {
        for (a, b, want) in [
            ("phi.>", ">", true),
            ("phi.>", "phi", false),
            ("phi.>", "*.raw", true),
            ("phi.raw", "phi.*", true),
            ("phi.raw", "pii.*", false),
            ("a.*.c", "a.b.>", true),
            ("a.*", "a.b.c", false),
            ("*", ">", true),
            ("a", "a", true),
        ] {
            assert_eq!(patterns_overlap(a, b), want, "{a} vs {b}");
            assert_eq!(patterns_overlap(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn pointers_parse_and_errors_name_the_rule() {
        let err = Policy::new()
            .class("phi")
            .field("/x", "pii", Action::Redact)
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("pii"), "{err}");
        let err = Policy::from_json(
            r#"{"classes":["phi"],"fields":[{"path":"/a","class":"phi","action":"mangle"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mangle"), "{err}");
        let err = Policy::from_json(r#"{"classes":["phi"],"fieldz":[]}"#).unwrap_err();
        assert!(err.to_string().contains("fieldz"), "{err}");
        let err = Policy::from_json(r#"{"classes":["phi"],"restricted":[{"subjects":"a..b","roles":[]}]}"#)
            .unwrap_err();
        assert_eq!(err.code(), "invalid_subject");
    }

    #[test]
    fn json_and_code_build_the_same_policy() {
        let from_json = Policy::from_json(
            r#"{"classes":["phi","pii"],
                "fields":[{"path":"/ssn","class":"pii","action":"partial","keep":4,"subjects":"p.>"},
                          {"path":"/name","class":"phi","action":"hash"}],
                "restricted":[{"subjects":["phi.>"],"roles":["clinician"]}],
                "grants":{"clinician":["phi","pii"]}}"#,
        )
        .unwrap();
        let in_code = Policy::new()
            .class("phi")
            .class("pii")
            .field_on(["p.>"], "/ssn", "pii", Action::Partial(4))
            .field("/name", "phi", Action::Hash)
            .restrict("phi.>", ["clinician"])
            .grant("clinician", ["phi", "pii"]);
        assert_eq!(from_json, in_code);
    }
}
