//! The fast path of masking: find the values that rules reach in a JSON text already
//! known to be valid, without building a tree, so masking replaces a few byte ranges
//! and copies the rest. It gives up (returns `None`) where the tree path's semantics
//! would need the tree: a `drop` to perform, or matches nested in one another (where
//! rule order decides what is left to match).

use super::model::Rule;
use crate::json_pointer::{array_index, push_escaped, Tok};

/// One value a rule reaches: the rule's index, the value's byte range, its pointer.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) rule: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) path: String,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    rules: &'a [&'a Rule],
    /// The pointer of the value at hand.
    path: String,
    out: Vec<Hit>,
}

/// The rules still matching at a value, one bit per rule. At depth `d` every one of them
/// has matched exactly `d` tokens, so the set and the depth say all.
type Active = u64;

fn bits(active: Active) -> impl Iterator<Item = usize> {
    let mut rest = active;
    std::iter::from_fn(move || {
        (rest != 0).then(|| {
            let r = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            r
        })
    })
}

/// Every value that `rules` reach in `json` (valid JSON), in document order; `None`
/// when two hits nest or there are more than 64 rules.
pub(crate) fn hits(json: &[u8], rules: &[&Rule]) -> Option<Vec<Hit>> {
    if rules.len() > 64 {
        return None;
    }
    let mut s = Scanner {
        b: json,
        i: 0,
        rules,
        path: String::new(),
        out: Vec::new(),
    };
    let active: Active = if rules.len() == 64 {
        !0
    } else {
        (1 << rules.len()) - 1
    };
    s.ws();
    // A pointer never names the whole document ("" is refused), so start one level down.
    if !s.visit_children(active, 0) {
        return None;
    }
    Some(s.out)
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    /// At a `"`: moves past the closing quote.
    fn skip_string(&mut self) {
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return;
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    fn skip_value(&mut self) {
        match self.b.get(self.i) {
            Some(b'"') => self.skip_string(),
            Some(b'{') | Some(b'[') => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            self.skip_string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while self.i < self.b.len()
                    && !matches!(self.b[self.i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    self.i += 1;
                }
            }
        }
    }

    /// At a value: records it for rules fully matched, descends for the others.
    /// `false` when hits nest.
    fn visit(&mut self, active: Active, depth: usize) -> bool {
        let rules = self.rules;
        let mut done = bits(active).filter(|r| rules[*r].tokens.len() == depth);
        if let Some(rule) = done.next() {
            if active.count_ones() > 1 {
                // Two rules reach this value, or one reaches it and another goes on inside.
                return false;
            }
            let start = self.i;
            self.skip_value();
            self.out.push(Hit {
                rule,
                start,
                end: self.i,
                path: self.path.clone(),
            });
            return true;
        }
        if active == 0 {
            self.skip_value();
            return true;
        }
        self.visit_children(active, depth)
    }

    /// At a member's value: visits it with the rules whose token at `depth` `fits` its
    /// key or index (`name` appends that to the pointer), then moves past a comma.
    fn member(
        &mut self,
        active: Active,
        depth: usize,
        fits: impl Fn(&str) -> bool,
        name: impl FnOnce(&mut String),
    ) -> bool {
        let rules = self.rules;
        let next = bits(active)
            .filter(|r| match &rules[*r].tokens[depth] {
                Tok::Any => true,
                Tok::Key(k) => fits(k),
            })
            .fold(0, |a, r| a | 1 << r);
        let ok = if next == 0 {
            self.skip_value();
            true
        } else {
            let len = self.path.len();
            name(&mut self.path);
            let ok = self.visit(next, depth + 1);
            self.path.truncate(len);
            ok
        };
        self.ws();
        if self.b.get(self.i) == Some(&b',') {
            self.i += 1;
        }
        ok
    }

    /// At an object or array: visits each member with the rules that match its key.
    fn visit_children(&mut self, active: Active, depth: usize) -> bool {
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                loop {
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return true;
                    }
                    let key_start = self.i + 1;
                    self.skip_string();
                    let raw = &self.b[key_start..self.i - 1];
                    let decoded;
                    let key: &str = if raw.contains(&b'\\') {
                        decoded = serde_json::from_slice::<String>(&self.b[key_start - 1..self.i])
                            .unwrap_or_default();
                        &decoded
                    } else {
                        std::str::from_utf8(raw).unwrap_or_default()
                    };
                    self.ws();
                    self.i += 1; // ':'
                    self.ws();
                    let fits = |k: &str| k == key;
                    let name = |p: &mut String| {
                        p.push('/');
                        push_escaped(p, key);
                    };
                    if !self.member(active, depth, fits, name) {
                        return false;
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut index = 0usize;
                loop {
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return true;
                    }
                    let fits = |k: &str| array_index(k) == Some(index);
                    let name = |p: &mut String| {
                        use std::fmt::Write;
                        let _ = write!(p, "/{index}");
                    };
                    if !self.member(active, depth, fits, name) {
                        return false;
                    }
                    index += 1;
                }
            }
            _ => {
                self.skip_value();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{Compiled, Policy};
    use crate::policy::Action;

    fn rules(paths: &[&str]) -> Compiled {
        let mut p = Policy::new().class("c");
        for path in paths {
            p = p.field(path, "c", Action::Redact);
        }
        Compiled::new(&p).unwrap()
    }

    fn found(json: &str, paths: &[&str]) -> Option<Vec<(usize, String, String)>> {
        let c = rules(paths);
        let refs: Vec<&Rule> = c.rules.iter().collect();
        hits(json.as_bytes(), &refs).map(|hs| {
            hs.into_iter()
                .map(|h| (h.rule, h.path, json[h.start..h.end].to_owned()))
                .collect()
        })
    }

    #[test]
    fn finds_values_with_keys_indices_wildcards_and_escapes() {
        let doc = r#" { "a" : {"x":1, "y" : "s\"q", "z":[1,{"x":true}]}, "b/c":{"w":null}, "k\u0041":[{"x":"v"}] } "#;
        assert_eq!(
            found(doc, &["/a/y", "/*/x", "/a/z/1/x", "/kA/*/x", "/b~1c/w"]).unwrap(),
            [
                (1, "/a/x".into(), "1".into()),
                (0, "/a/y".into(), r#""s\"q""#.into()),
                (2, "/a/z/1/x".into(), "true".into()),
                (4, "/b~1c/w".into(), "null".into()),
                (3, "/kA/0/x".into(), r#""v""#.into()),
            ]
        );
        assert!(found(r#"[1,2]"#, &["/a"]).unwrap().is_empty());
        assert!(found(r#""text""#, &["/a"]).unwrap().is_empty());
    }

    #[test]
    fn gives_up_on_nested_hits() {
        assert!(found(r#"{"a":{"b":1}}"#, &["/a", "/a/b"]).is_none());
        assert!(found(r#"{"a":1}"#, &["/a", "/*"]).is_none());
        assert!(found(r#"{"a":{"b":1},"c":2}"#, &["/a/b", "/c"]).is_some());
    }
}
