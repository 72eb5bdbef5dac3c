//! RFC 6901 JSON Pointers as the policy's field rules use them: parsing (with `*` for any
//! key or index), canonical array indexes, and escaping a key into a pointer.

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
}
