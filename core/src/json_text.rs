//! JSON text exactly as JavaScript's `JSON.stringify` writes it, for a binding that
//! serialises a language value itself (Python's dicts and lists), so the same content
//! gives the same payload bytes in every language (docs/design.md §3): compact (no
//! spaces), strings with `"`, `\` and the control characters escaped (`\b \f \n \r \t`,
//! the others as `\u00xx`) and everything else as UTF-8 (lone surrogates as `\udxxx`),
//! numbers in ECMAScript's `Number::toString` form (`1e-7`, `1e+21`, `100`, `0.1`, `-0`
//! as `0`). Node's binding hands JavaScript's own `JSON.stringify` text through.

use std::fmt::Write;

use crate::error::{Error, Result};

/// Appends `s` as a JSON string (quotes included).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if needs_escape(c) {
            out.push_str(&s[start..i]);
            push_escaped(out, c);
            start = i + c.len_utf8();
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends UTF-16 code units as a JSON string: the text as [`push_str`] writes it, each
/// lone surrogate as `\udxxx` (for a language whose strings can hold them).
pub fn push_utf16(out: &mut String, units: &[u16]) {
    out.push('"');
    for unit in char::decode_utf16(units.iter().copied()) {
        match unit {
            Ok(c) if needs_escape(c) => push_escaped(out, c),
            Ok(c) => out.push(c),
            Err(lone) => {
                let _ = write!(out, "\\u{:04x}", lone.unpaired_surrogate());
            }
        }
    }
    out.push('"');
}

fn needs_escape(c: char) -> bool {
    c == '"' || c == '\\' || (c as u32) < 0x20
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
    }
}

/// Appends `x` as ECMAScript's `Number::toString` writes it. NaN and the infinities have
/// no JSON form (`JSON.stringify` silently writes `null`): `invalid_argument`.
pub fn push_f64(out: &mut String, x: f64) -> Result<()> {
    if !x.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "data is not valid JSON: {x} has no JSON form"
        )));
    }
    if x == 0.0 {
        out.push('0'); // -0 too
        return Ok(());
    }
    if x < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` is the shortest round-tripping form: "d[.ddd]e<exp>", as ECMAScript
    // picks its digits (k digits, the decimal exponent n with x = 0.d1…dk × 10^n).
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().expect("{:e} writes an integer exponent") + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if n > 0 { '+' } else { '-' }, (n - 1).abs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(x: f64) -> String {
        let mut s = String::new();
        push_f64(&mut s, x).unwrap();
        s
    }

    fn string(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        // Each pair as node -e 'console.log(JSON.stringify(x))' prints it.
        for (x, js) in [
            (1.0, "1"),
            (-2.0, "-2"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (-0.0, "0"),
            (100.0, "100"),
            (123456789012.0, "123456789012"),
            (1e16, "10000000000000000"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e22, "1.5e+22"),
            (1e-6, "0.000001"),
            (1.25e-6, "0.00000125"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000123, "0.000123"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (9007199254740993.0, "9007199254740992"),
            (2.5, "2.5"),
            (1234.5678, "1234.5678"),
        ] {
            assert_eq!(num(x), js, "{x:e}");
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                push_f64(&mut String::new(), bad).unwrap_err().code(),
                "invalid_argument"
            );
        }
    }

    #[test]
    fn strings_are_escaped_as_javascript_escapes_them() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("q\"b\\s/"), r#""q\"b\\s/""#);
        assert_eq!(string("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(
            string("\u{0}\u{1}\u{1f}\u{7f}"),
            "\"\\u0000\\u0001\\u001f\u{7f}\""
        );
        assert_eq!(string("Zoë ✓ 🚑 \u{2028}"), "\"Zoë ✓ 🚑 \u{2028}\"");
        let mut out = String::new();
        push_utf16(&mut out, &[0x61, 0xd800, 0x62, 0xd83d, 0xde91, 0xdc00, 0x0a]);
        assert_eq!(out, "\"a\\ud800b🚑\\udc00\\n\"");
        let mut out = String::new();
        push_utf16(&mut out, &[]);
        assert_eq!(out, "\"\"");
    }
}
