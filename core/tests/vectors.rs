//! The shared subject vectors (tests/vectors/subjects.json), read by every language's suite.

use busbar::subject::{matches, validate_pattern, validate_subject, SubjectIndex};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/subjects.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("subjects.json is JSON")
}

fn cases<'a>(v: &'a Value, list: &str) -> &'a [Value] {
    let cases = v[list].as_array().unwrap_or_else(|| panic!("{list} is a list"));
    assert!(
        cases.len() >= 100,
        "{list} holds {} cases; the file was cut short",
        cases.len()
    );
    cases
}

fn s<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key].as_str().unwrap_or_else(|| panic!("{key} in {case}"))
}

fn check_validity(list: &str, validate: fn(&str) -> busbar::Result<()>) {
    let v = vectors();
    let mut failures = Vec::new();
    for case in cases(&v, list) {
        let input = s(case, "input");
        let want = case["valid"].as_bool().expect("valid is a bool");
        match validate(input) {
            Ok(()) if !want => failures.push(format!("{input:?} accepted; {}", case["note"])),
            Err(e) if want => failures.push(format!("{input:?} refused ({e}); {}", case["note"])),
            Err(e) => assert_eq!(e.code(), "invalid_subject"),
            Ok(()) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} {list} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn validate_subject_vectors() {
    check_validity("validate_subject", validate_subject);
}

#[test]
fn validate_pattern_vectors() {
    check_validity("validate_pattern", validate_pattern);
}

#[test]
fn matches_vectors() {
    let v = vectors();
    let mut failures = Vec::new();
    for case in cases(&v, "matches") {
        let (pattern, subject) = (s(case, "pattern"), s(case, "subject"));
        let want = case["matches"].as_bool().expect("matches is a bool");
        if matches(pattern, subject) != want {
            failures.push(format!(
                "matches({pattern:?}, {subject:?}) should be {want}; {}",
                case["note"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The index that routes the in-memory bus agrees with `matches` on every vector,
/// with all the vectors' valid patterns registered at once.
#[test]
fn index_agrees_with_matches_on_every_vector() {
    let v = vectors();
    let cases = cases(&v, "matches");
    let mut index = SubjectIndex::new();
    let mut patterns: Vec<&str> = Vec::new();
    for case in cases {
        let p = s(case, "pattern");
        if validate_pattern(p).is_ok() && !patterns.contains(&p) {
            index.insert(p, patterns.len()).unwrap();
            patterns.push(p);
        }
    }
    for case in cases {
        let subject = s(case, "subject");
        let mut got: Vec<usize> = index.matches(subject).into_iter().copied().collect();
        got.sort_unstable();
        let want: Vec<usize> = (0..patterns.len())
            .filter(|&i| matches(patterns[i], subject))
            .collect();
        assert_eq!(got, want, "index lookup of {subject:?}");
    }
}
