//! RFC 6901 JSON Pointers as the policy's field rules use them: parsing (with `*` for any
//! key or index), canonical array indexes, escaping a key into a pointer, and walking a
//! JSON value to every place a pointer reaches.

use serde_json::Value;
use smallvec::SmallVec;

use crate::error::Result;

/// One token of a compiled JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A key, or an array index when it is a canonical number.
    Key(String),
    /// `*`: any key or index.
    Any,
}

/// Parses an RFC 6901 pointer; a `*` token means any key or index.
pub(crate) fn parse_pointer(path: &str) -> std::result::Result<Vec<Tok>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "path {path:?} is not a JSON Pointer: it must start with '/'"
        ));
    };
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        if raw == "*" {
            tokens.push(Tok::Any);
            continue;
        }
        let mut key = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => return Err(format!("path {path:?}: '~' must be followed by 0 or 1")),
                }
            } else {
                key.push(c);
            }
        }
        tokens.push(Tok::Key(key));
    }
    Ok(tokens)
}

/// A canonical array index: digits without a leading zero (RFC 6901).
pub(crate) fn array_index(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    key.parse().ok()
}

/// Appends `key` to a pointer being built, escaped (`~` as `~0`, `/` as `~1`).
pub(crate) fn push_escaped(path: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
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

    #[test]
    fn pointers_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_pointer("/a~1b/*/c~0").unwrap(),
            [Tok::Key("a/b".into()), Tok::Any, Tok::Key("c~".into())]
        );
        assert!(parse_pointer("a/b").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn array_indexes_are_canonical() {
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("10"), Some(10));
        assert_eq!(array_index(""), None);
        assert_eq!(array_index("1a"), None);
    }

    #[test]
    fn escaping_round_trips_through_parsing() {
        let mut path = String::new();
        push_escaped(&mut path, "a/b~c");
        assert_eq!(path, "a~1b~0c");
        assert_eq!(
            parse_pointer(&format!("/{path}")).unwrap(),
            [Tok::Key("a/b~c".into())]
        );
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
