//! Subjects (docs/design.md §2): NATS's strict validity rule, wildcard matching,
//! and [`SubjectIndex`], the token trie that routes a subject to its subscriptions.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Pattern,
}

/// Longest subject or pattern accepted, in bytes of UTF-8 (docs/design.md §2).
///
/// A NATS server closes the connection on a protocol line longer than its
/// `max_control_line` (4096 bytes by default), and the longest line busbar sends,
/// `HPUB <subject> <reply-to> <header bytes> <total bytes>\r\n`, holds two subjects
/// and two numbers: with both subjects at this limit and both numbers at 20 digits it
/// is 4050 bytes. So every subject busbar accepts can be sent to a default server, with
/// any reply subject, on both backends alike.
pub const MAX_SUBJECT_BYTES: usize = 2000;

/// Most tokens in a subject or pattern (docs/design.md §2). NATS recommends at most
/// 16; 256 leaves room for any naming scheme while bounding the work per subject
/// (matching, overlap checks, the depth of the subscription trie).
pub const MAX_SUBJECT_TOKENS: usize = 256;

/// Longest queue group name accepted, in bytes: it shares the `SUB <pattern> <group>
/// <sid>\r\n` line with a pattern of up to [`MAX_SUBJECT_BYTES`].
pub const MAX_QUEUE_GROUP_BYTES: usize = MAX_SUBJECT_BYTES;

/// The NATS server's default `max_control_line`, which the limits above fit under.
pub const NATS_MAX_CONTROL_LINE: usize = 4096;

// The longest lines busbar sends fit in a default server's control line.
const _: () = assert!(
    "HPUB ".len() + MAX_SUBJECT_BYTES + 1 + MAX_SUBJECT_BYTES + 1 + 20 + 1 + 20 + 2 <= NATS_MAX_CONTROL_LINE
);
const _: () = assert!(
    "SUB ".len() + MAX_SUBJECT_BYTES + 1 + MAX_QUEUE_GROUP_BYTES + 1 + 20 + 2 <= NATS_MAX_CONTROL_LINE
);

/// Longest dead-letter prefix accepted ([`crate::ConsumerConfig::dlq_prefix`]), in bytes.
/// A dead letter goes to `<prefix>.<subject>`, so its subject may be this much (and a
/// dot) longer than [`MAX_SUBJECT_BYTES`]: a message on a subject at the limit can
/// always be dead-lettered (docs/design.md §2, §5).
pub const MAX_DLQ_PREFIX_BYTES: usize = 64;

/// Most tokens in a dead-letter prefix; a dead letter's subject may have this many
/// tokens more than [`MAX_SUBJECT_TOKENS`].
pub const MAX_DLQ_PREFIX_TOKENS: usize = 8;

/// Longest subject of a dead letter: `<prefix>.<subject>` with both at their limits.
const MAX_DEAD_LETTER_BYTES: usize = MAX_SUBJECT_BYTES + 1 + MAX_DLQ_PREFIX_BYTES;
const MAX_DEAD_LETTER_TOKENS: usize = MAX_SUBJECT_TOKENS + MAX_DLQ_PREFIX_TOKENS;

// A dead letter has no reply subject of its own; JetStream's publish acknowledgement
// inbox (`_INBOX.<22>.<22>` and a little) takes the reply slot.
const _: () =
    assert!("HPUB ".len() + MAX_DEAD_LETTER_BYTES + 1 + 128 + 1 + 20 + 1 + 20 + 2 <= NATS_MAX_CONTROL_LINE);

/// Checks a subject one publishes to: no empty token, no whitespace or control
/// character, no `*` or `>` token, at most [`MAX_SUBJECT_BYTES`] bytes and
/// [`MAX_SUBJECT_TOKENS`] tokens.
pub fn validate_subject(subject: &str) -> Result<()> {
    check(subject, Kind::Subject, Limit::User)
}

/// [`validate_subject`] with the longer limits of a dead letter's subject
/// (`<dlq prefix>.<subject>`): for dead letters busbar builds and for routing what
/// was already accepted.
pub(crate) fn validate_dead_letter_subject(subject: &str) -> Result<()> {
    check(subject, Kind::Subject, Limit::DeadLetter)
}

/// Which length limits a subject is checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    User,
    DeadLetter,
}

/// Checks a subscription pattern: as [`validate_subject`], but `*` tokens are
/// allowed anywhere and a `>` token as the last one.
pub fn validate_pattern(pattern: &str) -> Result<()> {
    check(pattern, Kind::Pattern, Limit::User)
}

/// Checks a queue group name: non-empty, at most [`MAX_QUEUE_GROUP_BYTES`] bytes, with
/// no whitespace or control character.
pub fn validate_queue_group(group: &str) -> Result<()> {
    if group.len() > MAX_QUEUE_GROUP_BYTES {
        return Err(Error::InvalidArgument(format!(
            "queue group {} is longer than the limit of {MAX_QUEUE_GROUP_BYTES} bytes",
            crate::error::quote(group)
        )));
    }
    if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "queue group {} must be non-empty and hold no whitespace or control character",
            crate::error::quote(group)
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

/// [`matches`] for a subject busbar routes, which may be a dead letter's (up to the
/// longer limits of [`validate_dead_letter_subject`]).
pub(crate) fn matches_routed(pattern: &str, subject: &str) -> bool {
    if validate_pattern(pattern).is_err() || validate_dead_letter_subject(subject).is_err() {
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

fn check(s: &str, kind: Kind, limit: Limit) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_subject(s, "it is empty"));
    }
    let (max_bytes, max_tokens, too_long, too_many) = match limit {
        Limit::User => (MAX_SUBJECT_BYTES, MAX_SUBJECT_TOKENS, TOO_LONG, TOO_MANY_TOKENS),
        Limit::DeadLetter => (
            MAX_DEAD_LETTER_BYTES,
            MAX_DEAD_LETTER_TOKENS,
            DEAD_LETTER_TOO_LONG,
            DEAD_LETTER_TOO_MANY_TOKENS,
        ),
    };
    if s.len() > max_bytes {
        return Err(Error::invalid_subject(s, too_long));
    }
    let bytes = s.as_bytes();
    let mut tokens = 1;
    let mut token_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            match b {
                b'.' => {
                    check_token(s, &s[token_start..i], false, kind)?;
                    token_start = i + 1;
                    tokens += 1;
                    if tokens > max_tokens {
                        return Err(Error::invalid_subject(s, too_many));
                    }
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

const TOO_LONG: &str = "it is longer than the limit of 2000 bytes";
const TOO_MANY_TOKENS: &str = "it has more than the limit of 256 tokens";
const DEAD_LETTER_TOO_LONG: &str =
    "it is longer than the limit of a dead letter's subject, 2065 bytes (2000 and a 64-byte prefix)";
const DEAD_LETTER_TOO_MANY_TOKENS: &str =
    "it has more than the limit of a dead letter's subject, 264 tokens (256 and an 8-token prefix)";
const _: () = assert!(MAX_DEAD_LETTER_BYTES == 2065 && MAX_DEAD_LETTER_TOKENS == 264);

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

/// Visits every value whose pattern matches `subject`, with an explicit stack rather
/// than recursion, so the depth of a subject never touches the thread's stack.
fn walk<'a, T>(root: &'a Node<T>, subject: &str, f: &mut impl FnMut(&'a T)) {
    // Each entry: a node, and the tokens of the subject still to match below it
    // (at least one, so a `>` at that node matches).
    let mut stack: SmallVec<[(&'a Node<T>, &str); 8]> = SmallVec::new();
    stack.push((root, subject));
    while let Some((node, rest)) = stack.pop() {
        node.tail.iter().for_each(&mut *f);
        let (token, tail) = match rest.split_once('.') {
            Some((t, r)) => (t, Some(r)),
            None => (rest, None),
        };
        for child in [node.star.as_deref(), node.literals.get(token)]
            .into_iter()
            .flatten()
        {
            match tail {
                None => child.here.iter().for_each(&mut *f),
                Some(rest) => stack.push((child, rest)),
            }
        }
    }
}

impl<T> Node<T> {
    fn child(&self, token: &str) -> Option<&Node<T>> {
        match token {
            "*" => self.star.as_deref(),
            lit => self.literals.get(lit),
        }
    }

    fn child_mut(&mut self, token: &str) -> Option<&mut Node<T>> {
        match token {
            "*" => self.star.as_deref_mut(),
            lit => self.literals.get_mut(lit),
        }
    }

    /// Detaches the child under `token` (dropped by the caller, iteratively).
    fn take_child(&mut self, token: &str) -> Option<Node<T>> {
        match token {
            "*" => self.star.take().map(|b| *b),
            lit => self.literals.remove(lit),
        }
    }

    /// Whether this node holds anything besides one child (the one on a path through it).
    fn holds_more_than_one_child(&self) -> bool {
        let children = self.literals.len() + usize::from(self.star.is_some());
        !self.here.is_empty() || !self.tail.is_empty() || children > 1
    }
}

/// Removes the first value under `tokens` (a valid pattern split on `.`) for which
/// `is_it` is true, then cuts off the chain of nodes left empty. Iterative.
fn remove_in<T>(root: &mut Node<T>, tokens: &[&str], is_it: &mut impl FnMut(&T) -> bool) -> Option<T> {
    let (path, in_tail) = match tokens.split_last() {
        Some((&">", path)) => (path, true),
        _ => (tokens, false),
    };
    // The deepest node on the path that must stay (it holds something else): the
    // chain of nodes below it is cut off if the removal leaves the last one empty.
    let mut keep = 0;
    let mut node: &Node<T> = root;
    for (depth, token) in path.iter().enumerate() {
        if depth == 0 || node.holds_more_than_one_child() {
            keep = depth;
        }
        node = node.child(token)?;
    }
    let mut node: &mut Node<T> = root;
    for token in path {
        node = node.child_mut(token)?;
    }
    let values = if in_tail { &mut node.tail } else { &mut node.here };
    let removed = values.remove(values.iter().position(is_it)?);
    if node.is_empty() && !path.is_empty() {
        let mut node: &mut Node<T> = root;
        for token in &path[..keep] {
            node = node.child_mut(token)?;
        }
        drop(node.take_child(path[keep]));
    }
    Some(removed)
}

impl<T> Drop for Node<T> {
    /// Drops the subtree with an explicit stack: a deep trie never recurses.
    fn drop(&mut self) {
        let mut stack: Vec<Node<T>> = self.literals.drain().map(|(_, n)| n).collect();
        stack.extend(self.star.take().map(|b| *b));
        while let Some(mut node) = stack.pop() {
            stack.extend(node.literals.drain().map(|(_, n)| n));
            stack.extend(node.star.take().map(|b| *b));
            // `node` is dropped here with no children left.
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
    fn limits_are_named_and_enforced() {
        let at_limit = "y".repeat(MAX_SUBJECT_BYTES);
        validate_subject(&at_limit).unwrap();
        let err = validate_subject(&"y".repeat(MAX_SUBJECT_BYTES + 1)).unwrap_err();
        assert_eq!(err.code(), "invalid_subject");
        assert!(
            err.to_string()
                .contains(&format!("limit of {MAX_SUBJECT_BYTES} bytes")),
            "{err}"
        );
        // Bytes of UTF-8, not characters.
        assert!(validate_subject(&"é".repeat(MAX_SUBJECT_BYTES / 2 + 1)).is_err());
        let deep = vec!["a"; MAX_SUBJECT_TOKENS].join(".");
        validate_pattern(&deep).unwrap();
        let err = validate_pattern(&format!("{deep}.>")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("limit of {MAX_SUBJECT_TOKENS} tokens")),
            "{err}"
        );
        let group = "g".repeat(MAX_QUEUE_GROUP_BYTES + 1);
        let err = validate_queue_group(&group).unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(err.to_string().contains("limit of 2000 bytes"), "{err}");
        validate_queue_group(&group[1..]).unwrap();
    }

    /// A trie far deeper than the limits allow (built past `insert`'s validation)
    /// is walked, pruned and dropped without recursion, on a small thread stack.
    #[test]
    fn deep_trie_needs_no_stack() {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let depth = 100_000;
                let mut index: SubjectIndex<u32> = SubjectIndex::new();
                let mut node = &mut index.root;
                for _ in 0..depth {
                    node = node.literals.entry("a".into()).or_default();
                }
                node.here.push(1);
                index.len = 1;
                let subject = vec!["a"; depth].join(".");
                let mut seen = Vec::new();
                index.for_each_match(&subject, |v| seen.push(*v));
                assert_eq!(seen, [1]);
                let tokens: Vec<&str> = subject.split('.').collect();
                assert_eq!(remove_in(&mut index.root, &tokens, &mut |v| *v == 1), Some(1));
                assert!(index.root.is_empty(), "the whole chain is pruned");
                // And a deep trie still full when dropped.
                let mut index: SubjectIndex<u32> = SubjectIndex::new();
                let mut node = &mut index.root;
                for _ in 0..depth {
                    node = node.star.get_or_insert_with(Default::default);
                }
                node.here.push(2);
                drop(index);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn remove_prunes_only_the_empty_chain() {
        let mut index = SubjectIndex::new();
        index.insert("a.b.c.d", 1).unwrap();
        index.insert("a.b", 2).unwrap();
        index.insert("a.*.x.>", 3).unwrap();
        assert_eq!(index.remove("a.b.c.d", |v| *v == 1), Some(1));
        let a = index.root.literals.get("a").unwrap();
        assert!(
            a.literals.get("b").unwrap().literals.is_empty(),
            "c.d cut off below a.b"
        );
        assert_eq!(index.matches("a.b"), [&2]);
        assert_eq!(index.matches("a.q.x.y"), [&3]);
        assert_eq!(index.remove("a.*.x.>", |v| *v == 3), Some(3));
        assert!(index.root.literals.get("a").unwrap().star.is_none());
        assert_eq!(index.remove("a.b", |v| *v == 2), Some(2));
        assert!(index.root.is_empty());
        assert_eq!(index.remove("a.b", |v| *v == 2), None);
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
