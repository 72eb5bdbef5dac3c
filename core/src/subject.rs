//! Subjects (docs/design.md §2): NATS's strict validity rule, wildcard matching,
//! and [`SubjectIndex`], the token trie that routes a subject to its subscriptions.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Pattern,
}

/// Checks a subject one publishes to: no empty token, no whitespace or control
/// character, and no `*` or `>` token.
pub fn validate_subject(subject: &str) -> Result<()> {
    check(subject, Kind::Subject)
}

/// Checks a subscription pattern: as [`validate_subject`], but `*` tokens are
/// allowed anywhere and a `>` token as the last one.
pub fn validate_pattern(pattern: &str) -> Result<()> {
    check(pattern, Kind::Pattern)
}

/// Checks a queue group name: non-empty, with no whitespace or control character.
pub fn validate_queue_group(group: &str) -> Result<()> {
    if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "queue group {group:?} must be non-empty and hold no whitespace or control character"
        )));
    }
    Ok(())
}

/// Whether `pattern` matches `subject`, exactly as a NATS server decides.
/// False when either is invalid.
pub fn matches(pattern: &str, subject: &str) -> bool {
    if validate_pattern(pattern).is_err() || validate_subject(subject).is_err() {
        return false;
    }
    matches_valid(pattern, subject)
}

/// [`matches`] for inputs already known to be valid.
pub(crate) fn matches_valid(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (lit, Some(s)) if lit == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

fn check(s: &str, kind: Kind) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_subject(s, "it is empty"));
    }
    let bytes = s.as_bytes();
    let mut token_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            match b {
                b'.' => {
                    check_token(s, &s[token_start..i], false, kind)?;
                    token_start = i + 1;
                }
                b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f => {
                    return Err(Error::invalid_subject(s, "it contains whitespace"))
                }
                0x00..=0x1b | 0x7f => {
                    return Err(Error::invalid_subject(s, "it contains a control character"))
                }
                _ => {}
            }
            i += 1;
        } else {
            // Multi-byte UTF-8: `i` is always at a char boundary here.
            let c = s[i..].chars().next().expect("char boundary inside the string");
            if c.is_whitespace() {
                return Err(Error::invalid_subject(s, "it contains whitespace"));
            }
            if c.is_control() {
                return Err(Error::invalid_subject(s, "it contains a control character"));
            }
            i += c.len_utf8();
        }
    }
    check_token(s, &s[token_start..], true, kind)
}

fn check_token(s: &str, token: &str, last: bool, kind: Kind) -> Result<()> {
    match token {
        "" => Err(Error::invalid_subject(s, "it has an empty token")),
        "*" if kind == Kind::Subject => Err(Error::invalid_subject(
            s,
            "a subject one publishes to cannot hold the wildcard token '*'",
        )),
        ">" if kind == Kind::Subject => Err(Error::invalid_subject(
            s,
            "a subject one publishes to cannot hold the wildcard token '>'",
        )),
        ">" if !last => Err(Error::invalid_subject(s, "'>' is only allowed as the last token")),
        _ => Ok(()),
    }
}

/// A token trie from subscription patterns to values.
///
/// Looking up a subject walks one trie level per token (plus the `*` branches that
/// exist), so its cost follows the number of tokens, not the number of patterns.
pub struct SubjectIndex<T> {
    root: Node<T>,
    len: usize,
}

struct Node<T> {
    literals: HashMap<Box<str>, Node<T>, RandomState>,
    star: Option<Box<Node<T>>>,
    /// Values of patterns ending in `>` at this level.
    tail: Vec<T>,
    /// Values of patterns ending exactly at this node.
    here: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literals: HashMap::default(),
            star: None,
            tail: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.star.is_none() && self.tail.is_empty() && self.here.is_empty()
    }
}

impl<T> Default for SubjectIndex<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SubjectIndex<T> {
    /// An empty index.
    pub fn new() -> Self {
        SubjectIndex {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern` (validated with [`validate_pattern`]).
    pub fn insert(&mut self, pattern: &str, value: T) -> Result<()> {
        validate_pattern(pattern)?;
        let mut node = &mut self.root;
        for token in pattern.split('.') {
            match token {
                ">" => {
                    node.tail.push(value);
                    self.len += 1;
                    return Ok(());
                }
                "*" => node = node.star.get_or_insert_with(Default::default),
                lit => node = node.literals.entry(lit.into()).or_default(),
            }
        }
        node.here.push(value);
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the first value under `pattern` for which `is_it` is true,
    /// pruning nodes left empty.
    pub fn remove(&mut self, pattern: &str, mut is_it: impl FnMut(&T) -> bool) -> Option<T> {
        if validate_pattern(pattern).is_err() {
            return None;
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        let removed = remove_in(&mut self.root, &tokens, &mut is_it);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with every value whose pattern matches `subject`.
    /// `subject` must be a valid publish subject (see [`validate_subject`]).
    pub fn for_each_match<'a>(&'a self, subject: &str, mut f: impl FnMut(&'a T)) {
        walk(&self.root, subject, &mut f);
    }

    /// The values whose pattern matches `subject` (empty for an invalid subject).
    pub fn matches(&self, subject: &str) -> Vec<&T> {
        let mut out = Vec::new();
        if validate_subject(subject).is_ok() {
            self.for_each_match(subject, |v| out.push(v));
        }
        out
    }
}

fn walk<'a, T>(node: &'a Node<T>, rest: &str, f: &mut impl FnMut(&'a T)) {
    // `rest` holds at least one token, so a `>` at this level matches.
    node.tail.iter().for_each(&mut *f);
    let (token, tail) = match rest.split_once('.') {
        Some((t, r)) => (t, Some(r)),
        None => (rest, None),
    };
    if let Some(child) = node.literals.get(token) {
        step(child, tail, f);
    }
    if let Some(child) = &node.star {
        step(child, tail, f);
    }
}

fn step<'a, T>(child: &'a Node<T>, tail: Option<&str>, f: &mut impl FnMut(&'a T)) {
    match tail {
        None => child.here.iter().for_each(f),
        Some(rest) => walk(child, rest, f),
    }
}

fn remove_in<T>(node: &mut Node<T>, tokens: &[&str], is_it: &mut impl FnMut(&T) -> bool) -> Option<T> {
    let take =
        |v: &mut Vec<T>, is_it: &mut dyn FnMut(&T) -> bool| v.iter().position(is_it).map(|i| v.remove(i));
    match tokens {
        [] => take(&mut node.here, is_it),
        [">"] => take(&mut node.tail, is_it),
        ["*", rest @ ..] => {
            let child = node.star.as_deref_mut()?;
            let found = remove_in(child, rest, is_it);
            if child.is_empty() {
                node.star = None;
            }
            found
        }
        [lit, rest @ ..] => {
            let child = node.literals.get_mut(*lit)?;
            let found = remove_in(child, rest, is_it);
            if child.is_empty() {
                node.literals.remove(*lit);
            }
            found
        }
    }
}

/// Whether some subject matches both patterns (two streams may not overlap;
/// a subscription overlapping a restricted subject needs a role).
pub(crate) fn patterns_overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_subject_and_rule() {
        let err = validate_subject("orders..eu").unwrap_err();
        assert_eq!(err.code(), "invalid_subject");
        assert_eq!(
            err.to_string(),
            "invalid subject \"orders..eu\": it has an empty token"
        );
        let err = validate_pattern("a.>.b").unwrap_err();
        assert!(
            err.to_string().contains("'>' is only allowed as the last token"),
            "{err}"
        );
    }

    #[test]
    fn index_routes_like_matches() {
        let patterns = ["a.b", "a.*", "a.>", ">", "*.b", "a.b.c", "*.*.c", "x"];
        let mut index = SubjectIndex::new();
        for (i, p) in patterns.iter().enumerate() {
            index.insert(p, i).unwrap();
        }
        for subject in ["a.b", "a", "a.b.c", "x", "x.b", "q.r.c", "a.c"] {
            let mut got: Vec<usize> = index.matches(subject).into_iter().copied().collect();
            got.sort();
            let want: Vec<usize> = (0..patterns.len())
                .filter(|&i| matches(patterns[i], subject))
                .collect();
            assert_eq!(got, want, "subject {subject}");
        }
    }

    #[test]
    fn remove_prunes_and_keeps_others() {
        let mut index = SubjectIndex::new();
        index.insert("a.*.c", 1).unwrap();
        index.insert("a.*.c", 2).unwrap();
        index.insert("a.>", 3).unwrap();
        assert_eq!(index.remove("a.*.c", |v| *v == 1), Some(1));
        assert_eq!(index.remove("a.*.c", |v| *v == 1), None);
        assert_eq!(index.len(), 2);
        assert_eq!(index.matches("a.b.c").len(), 2);
        assert_eq!(index.remove("a.*.c", |v| *v == 2), Some(2));
        assert_eq!(index.remove("a.>", |v| *v == 3), Some(3));
        assert!(index.is_empty());
        assert!(index.root.is_empty(), "every node pruned");
    }

    #[test]
    fn overlapping_patterns() {
        for (a, b, want) in [
            ("orders.>", "orders.created", true),
            ("orders.*", "orders.created", true),
            ("orders.*", "*.created", true),
            ("orders.*", "orders.a.b", false),
            ("orders.>", "payments.>", false),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            (">", "x", true),
            ("a", "a.b", false),
        ] {
            assert_eq!(patterns_overlap(a, b), want, "{a} vs {b}");
            assert_eq!(patterns_overlap(b, a), want, "{b} vs {a}");
        }
    }
}
