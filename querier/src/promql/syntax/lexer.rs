//! A PromQL tokenizer that knows just enough of the language (strings,
//! comments, numbers, durations, identifiers, operators and brackets) for the
//! front end to find extended syntax without ever looking inside a string.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Ident,
    Number,
    Duration,
    Str,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    /// `</` (keep buckets below) and `>/` (keep buckets above).
    TrimUpper,
    TrimLower,
    /// Any other operator (`+`, `==`, `=~`, ...), its text in the span.
    Op,
}

/// One token: its kind and byte span in the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }
}

/// Duration units, longest first so `ms` wins over `m`.
const UNITS: [&str; 7] = ["ms", "y", "w", "d", "h", "m", "s"];

/// Splits `src` into tokens, dropping whitespace and comments. Errors name
/// the byte offset of what could not be read (an unterminated string or an
/// unknown character); the caller leaves such queries to promql-parser.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(format!("unterminated string at position {start}")),
                        Some(&q) if q == c => break,
                        Some(b'\\') if c != b'`' => i += 2,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                Kind::Str
            }
            b'(' => one(&mut i, Kind::LParen),
            b')' => one(&mut i, Kind::RParen),
            b'{' => one(&mut i, Kind::LBrace),
            b'}' => one(&mut i, Kind::RBrace),
            b'[' => one(&mut i, Kind::LBracket),
            b']' => one(&mut i, Kind::RBracket),
            b',' => one(&mut i, Kind::Comma),
            b':' if !b.get(i + 1).is_some_and(|&n| is_ident_start(n)) => one(&mut i, Kind::Colon),
            b'@' => one(&mut i, Kind::At),
            b'<' if b.get(i + 1) == Some(&b'/') => {
                i += 2;
                Kind::TrimUpper
            }
            b'>' if b.get(i + 1) == Some(&b'/') => {
                i += 2;
                Kind::TrimLower
            }
            b'=' | b'!' | b'<' | b'>' => {
                i += 1;
                if matches!(b.get(i), Some(b'=') | Some(b'~')) {
                    i += 1;
                }
                Kind::Op
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => one(&mut i, Kind::Op),
            b'0'..=b'9' | b'.' => number_or_duration(b, &mut i),
            c if is_ident_start(c) => {
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                Kind::Ident
            }
            _ => {
                // Any other character (non-ASCII outside a string, ...) is
                // promql-parser's to report.
                return Err(format!("unexpected character at position {start}"));
            }
        };
        out.push(Token {
            kind,
            start,
            end: i.min(b.len()),
        });
    }
    Ok(out)
}

fn one(i: &mut usize, k: Kind) -> Kind {
    *i += 1;
    k
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// A number (decimal, float with exponent, hex) or a duration such as
/// `1h30m` (integer groups each followed by a unit).
fn number_or_duration(b: &[u8], i: &mut usize) -> Kind {
    let start = *i;
    if b.get(*i) == Some(&b'0') && matches!(b.get(*i + 1), Some(b'x') | Some(b'X')) {
        *i += 2;
        while *i < b.len() && b[*i].is_ascii_hexdigit() {
            *i += 1;
        }
        return Kind::Number;
    }
    let digits = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(i);
    // A duration: integer groups each followed by a unit.
    if *i > start && unit_at(b, *i).is_some() {
        while let Some(u) = unit_at(b, *i) {
            *i += u;
            let group = *i;
            digits(i);
            if *i == group {
                break;
            }
            if unit_at(b, *i).is_none() {
                // Digits without a unit after a duration: not ours to judge.
                break;
            }
        }
        return Kind::Duration;
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        digits(i);
    }
    if matches!(b.get(*i), Some(b'e') | Some(b'E'))
        && (b.get(*i + 1).is_some_and(u8::is_ascii_digit)
            || (matches!(b.get(*i + 1), Some(b'+') | Some(b'-'))
                && b.get(*i + 2).is_some_and(u8::is_ascii_digit)))
    {
        *i += 2;
        digits(i);
    }
    Kind::Number
}

/// The length of a duration unit at `i`, if one starts there and is not the
/// beginning of a longer identifier.
fn unit_at(b: &[u8], i: usize) -> Option<usize> {
    UNITS.iter().find_map(|u| {
        let u = u.as_bytes();
        let end = i + u.len();
        let matches = b.get(i..end) == Some(u);
        let next_ok = !b
            .get(end)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_');
        (matches && next_ok).then_some(u.len())
    })
}

/// Seconds of a duration token such as `1h30m` or `500ms`.
pub(crate) fn duration_seconds(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < b.len() {
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: f64 = text.get(s..i)?.parse().ok()?;
        let u = unit_at(b, i)?;
        let unit = text.get(i..i + u)?;
        i += u;
        total += n * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
    }
    Some(total)
}
