//! String literals whose escapes spell bytes that are not UTF-8.
//!
//! PromQL strings follow Go's escapes, and Go strings are bytes: `"\xff"` is
//! the single byte 0xff, and Prometheus 3 (which accepts any UTF-8 label
//! name) refuses it as a label name in `count_values`, `label_replace`,
//! `label_join` and `histogram_quantiles`, quoting it back as `"\xff"`.
//! promql-parser decodes the same escape to the character U+00FF, a valid
//! name. So the front end rewrites such a literal before parsing: every byte
//! that is not part of valid UTF-8 becomes one character of a reserved
//! private-use range, [`check_label_name`] refuses names holding one, and
//! [`go_quote`] spells them as Go does. As a matcher value such a string
//! matches no stored value, as in Prometheus (stored values are UTF-8).

/// The first of 256 private-use characters (plane 16) standing for the
/// bytes 0x00..=0xff of a literal that are not UTF-8.
const BYTE_BASE: u32 = 0x10_FF00;

/// The literal to parse instead of `lit` (a quoted PromQL string token with
/// its quotes), when its escapes spell bytes that are not UTF-8. `None`
/// when the literal is UTF-8 or malformed (promql-parser reports that).
pub(crate) fn substitute(lit: &str) -> Option<String> {
    let bytes = decode(lit)?;
    if std::str::from_utf8(&bytes).is_ok() {
        return None;
    }
    let mut out = String::with_capacity(lit.len() + 16);
    out.push('"');
    for c in lossless_chars(&bytes) {
        if c.is_ascii_alphanumeric() || c == ' ' {
            out.push(c);
        } else {
            out.push_str(&format!("\\U{:08x}", u32::from(c)));
        }
    }
    out.push('"');
    Some(out)
}

/// The bytes a quoted literal (`"..."` or `'...'`) spells, by Go's escapes.
/// Raw strings (backquotes) have no escapes and are UTF-8 already.
fn decode(lit: &str) -> Option<Vec<u8>> {
    let quote = lit.chars().next()?;
    if !matches!(quote, '"' | '\'') || lit.len() < 2 || !lit.ends_with(quote) {
        return None;
    }
    let inner = &lit[1..lit.len() - 1];
    if inner.contains('\n') {
        return None;
    }
    if !inner.contains('\\') {
        return Some(inner.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            // A quote is escaped only inside its own kind of literal.
            '"' | '\'' if e == quote => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        match e {
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&h, 16).ok().filter(|_| h.len() == 2)?);
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                out.push(u8::try_from(v).ok().filter(|_| rest.len() == 2)?);
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = chars.by_ref().take(n).collect();
                let c = u32::from_str_radix(&h, 16).ok().and_then(char::from_u32)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `bytes` as characters: valid UTF-8 as itself, every other byte as its
/// reserved character.
fn lossless_chars(mut bytes: &[u8]) -> Vec<char> {
    let mut out = Vec::with_capacity(bytes.len());
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend(s.chars());
                break;
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.extend(std::str::from_utf8(good).unwrap_or_default().chars());
                let n = e.error_len().unwrap_or(bad.len());
                out.extend(bad[..n].iter().map(|&b| byte_char(b)));
                bytes = &bad[n..];
            }
        }
    }
    out
}

fn byte_char(b: u8) -> char {
    char::from_u32(BYTE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte a reserved character stands for.
fn char_byte(c: char) -> Option<u8> {
    u32::from(c)
        .checked_sub(BYTE_BASE)
        .and_then(|b| u8::try_from(b).ok())
}

/// Prometheus 3's check of a label name given in a query: not empty and
/// UTF-8. The error is the name quoted as Prometheus quotes it.
pub(crate) fn check_label_name(name: &str) -> Result<(), String> {
    if !storage::labels::is_valid_label_name(name) || name.chars().any(|c| char_byte(c).is_some()) {
        Err(go_quote(name))
    } else {
        Ok(())
    }
}

/// `s` quoted as Go's `%q` quotes it: bytes that were not UTF-8 as `\xNN`,
/// quotes, backslashes and control characters escaped, the rest as is.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if char_byte(c).is_some() || c < ' ' || c == '\u{7f}' => {
                let b = char_byte(c).unwrap_or(c as u8);
                out.push_str(&format!("\\x{b:02x}"));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_that_are_utf8_are_left_alone() {
        for lit in [
            r#""abc""#,
            r#"'a\'b'"#,
            r#""\u00c5""#,
            r#""\xc3\x85""#,
            r#""\303\205""#,
            "`\\xff`",
            r#""\q""#,
        ] {
            assert_eq!(substitute(lit), None, "{lit}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_survive_parsing_and_fail_as_label_names() {
        let lit = substitute(r#""a\xc5z""#).expect("not UTF-8");
        let parsed = promql_parser::parser::parse(&lit).expect("parses");
        let promql_parser::parser::Expr::StringLiteral(s) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(check_label_name(&s.val), Err(r#""a\xc5z""#.to_string()));
        assert_eq!(go_quote(&s.val), r#""a\xc5z""#);
        // Octal escapes and a lone continuation byte, with valid UTF-8 around.
        let lit = substitute(r#"'Å\377-\x80"'"#).expect("not UTF-8");
        let parsed = promql_parser::parser::parse(&lit).expect("parses");
        let promql_parser::parser::Expr::StringLiteral(s) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(go_quote(&s.val), r#""Å\xff-\x80\"""#);
    }

    #[test]
    fn label_names_follow_prometheus_3() {
        for ok in ["job", "service.name", "k8s-pod", "Å", "9lives"] {
            assert_eq!(check_label_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_label_name(""), Err(r#""""#.to_string()));
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\x01""#);
    }
}
