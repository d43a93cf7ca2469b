//! Duration expressions: arithmetic on numbers (seconds) and durations in
//! ranges, subquery steps and offsets, with `step()`, `range()`, `min_of()`
//! and `max_of()`. They are evaluated before parsing and written back as a
//! plain duration in milliseconds.
//!
//! Precedence as in PromQL: `+ -` below `* / %`, below unary sign, below
//! `^` (right-associative). After `offset` only a signed primary (number,
//! duration, parenthesised expression or function) belongs to the offset:
//! `x offset 1m * 2` multiplies the selector.

use super::QueryContext;
use super::lexer::{Kind, Token, duration_seconds};

/// A replacement of `start..end` with the text.
pub(crate) type Replace = (usize, usize, String);

/// The span `start..end` of an offset expression and its milliseconds.
pub(crate) type OffsetValue = (usize, usize, i64);

struct P<'a> {
    src: &'a str,
    toks: &'a [Token],
    i: usize,
    end: usize,
    ctx: QueryContext,
}

impl P<'_> {
    fn peek(&self) -> Option<&Token> {
        if self.i < self.end {
            self.toks.get(self.i)
        } else {
            None
        }
    }

    fn peek_op(&self) -> Option<&str> {
        self.peek()
            .filter(|t| t.kind == Kind::Op)
            .map(|t| t.text(self.src))
    }

    fn err(&self, what: &str) -> String {
        match self.peek() {
            Some(t) => format!(
                "invalid duration expression: {what}, found {:?} at position {}",
                t.text(self.src),
                t.start
            ),
            None => format!("invalid duration expression: {what}, found its end"),
        }
    }

    fn expect(&mut self, k: Kind, what: &str) -> Result<(), String> {
        match self.peek() {
            Some(t) if t.kind == k => {
                self.i += 1;
                Ok(())
            }
            _ => Err(self.err(&format!("expected {what}"))),
        }
    }

    /// Binary operators at or above `min` precedence.
    fn expr(&mut self, min: u8) -> Result<f64, String> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek_op() {
            let (prec, right) = match op {
                "+" | "-" => (1, false),
                "*" | "/" | "%" => (2, false),
                "^" => (4, true),
                _ => break,
            };
            if prec < min {
                break;
            }
            let op = op.to_string();
            self.i += 1;
            let rhs = if prec == 4 {
                self.pow_operand()?
            } else {
                self.expr(if right { prec } else { prec + 1 })?
            };
            lhs = match op.as_str() {
                "+" => lhs + rhs,
                "-" => lhs - rhs,
                "*" => lhs * rhs,
                "/" => lhs / rhs,
                "%" => lhs % rhs,
                _ => lhs.powf(rhs),
            };
        }
        Ok(lhs)
    }

    /// A sign binds more weakly than `^`: `-2^2` is -4.
    fn unary(&mut self) -> Result<f64, String> {
        match self.peek_op() {
            Some("-") => {
                self.i += 1;
                Ok(-self.unary()?)
            }
            Some("+") => {
                self.i += 1;
                self.unary()
            }
            _ => self.pow_operand(),
        }
    }

    /// A primary, raised to a right-associative power if one follows.
    fn pow_operand(&mut self) -> Result<f64, String> {
        let base = self.primary()?;
        if self.peek_op() == Some("^") {
            self.i += 1;
            let exp = self.unary()?;
            return Ok(base.powf(exp));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<f64, String> {
        let Some(&t) = self.peek() else {
            return Err(self.err("expected a number or a duration"));
        };
        let text = t.text(self.src);
        match t.kind {
            Kind::Number => {
                self.i += 1;
                parse_number(text).ok_or_else(|| format!("invalid number {text:?} in a duration"))
            }
            Kind::Duration => {
                self.i += 1;
                duration_seconds(text).ok_or_else(|| format!("invalid duration {text:?}"))
            }
            Kind::LParen => {
                self.i += 1;
                let v = self.expr(0)?;
                self.expect(Kind::RParen, "')'")?;
                Ok(v)
            }
            Kind::Ident => {
                let name = text.to_ascii_lowercase();
                self.i += 1;
                self.expect(Kind::LParen, "'(' after a function name")?;
                let v = match name.as_str() {
                    "step" => self.ctx.step_ms as f64 / 1000.0,
                    "range" => self.ctx.end_ms.saturating_sub(self.ctx.start_ms) as f64 / 1000.0,
                    "min_of" | "max_of" => {
                        let a = self.expr(0)?;
                        self.expect(Kind::Comma, "','")?;
                        let b = self.expr(0)?;
                        if name == "min_of" { a.min(b) } else { a.max(b) }
                    }
                    _ => {
                        return Err(format!(
                            "invalid duration expression: unknown function {text:?} (step, range, min_of and max_of are allowed)"
                        ));
                    }
                };
                self.expect(Kind::RParen, "')'")?;
                Ok(v)
            }
            _ => Err(self.err("expected a number or a duration")),
        }
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    text.parse().ok()
}

/// Milliseconds of a number of seconds, rounded (so `0.1*30` is 3000, not
/// 2999).
fn to_ms(secs: f64, what: &str) -> Result<i64, String> {
    let ms = (secs * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 1e15 {
        return Err(format!("{what} duration out of range: {secs}s"));
    }
    Ok(ms as i64)
}

/// The contents of `[...]` (tokens `from..close`): a range, or a subquery's
/// range and optional step. Returns whether it is a subquery and the text
/// replacements for the parts that are expressions (a lone duration token is
/// left as written).
pub(crate) fn brackets(
    src: &str,
    toks: &[Token],
    from: usize,
    close: usize,
    ctx: QueryContext,
) -> Result<(bool, Vec<Replace>), String> {
    let mut colon = None;
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().take(close).skip(from) {
        match t.kind {
            Kind::LParen => depth += 1,
            Kind::RParen => depth = depth.saturating_sub(1),
            Kind::Colon if depth == 0 && colon.is_none() => colon = Some(j),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let range_end = colon.unwrap_or(close);
    if let Some(r) = part(src, toks, from, range_end, ctx, "range")? {
        out.push(r);
    }
    if let Some(c) = colon
        && c + 1 < close
        && let Some(r) = part(src, toks, c + 1, close, ctx, "subquery step")?
    {
        out.push(r);
    }
    Ok((colon.is_some(), out))
}

/// One duration part `from..to`: `None` when it is a lone duration token (or
/// empty, promql-parser's to judge).
fn part(
    src: &str,
    toks: &[Token],
    from: usize,
    to: usize,
    ctx: QueryContext,
    what: &str,
) -> Result<Option<Replace>, String> {
    if to <= from || (to == from + 1 && toks.get(from).is_some_and(|t| t.kind == Kind::Duration)) {
        return Ok(None);
    }
    let mut p = P {
        src,
        toks,
        i: from,
        end: to,
        ctx,
    };
    let v = p.expr(0)?;
    if p.i != to {
        return Err(p.err(&format!("unexpected token in the {what}")));
    }
    let ms = to_ms(v, what)?;
    if ms <= 0 {
        return Err(format!(
            "invalid duration expression: the {what} must be positive, it evaluates to {}s",
            v
        ));
    }
    let (Some(a), Some(b)) = (toks.get(from), toks.get(to - 1)) else {
        return Ok(None);
    };
    Ok(Some((a.start, b.end, format!("{ms}ms"))))
}

/// The offset after the `offset` keyword (tokens from `from`): a signed
/// primary. Returns the index after it and, if it is more than a (signed)
/// duration token, its span and value in milliseconds.
pub(crate) fn offset(
    src: &str,
    toks: &[Token],
    from: usize,
    ctx: QueryContext,
) -> Result<(usize, Option<OffsetValue>), String> {
    let mut p = P {
        src,
        toks,
        i: from,
        end: toks.len(),
        ctx,
    };
    let mut neg = false;
    while let Some(op) = p.peek_op() {
        match op {
            "-" => neg = !neg,
            "+" => {}
            _ => break,
        }
        p.i += 1;
    }
    let signs = p.i - from;
    let first = p.i;
    let v = p.primary()?;
    let end = p.i;
    let plain = end == first + 1
        && signs <= 1
        && toks.get(first).is_some_and(|t| t.kind == Kind::Duration)
        && (signs == 0 || toks.get(from).is_some_and(|t| t.text(src) == "-"));
    if plain {
        return Ok((end, None));
    }
    let ms = to_ms(if neg { -v } else { v }, "offset")?;
    let (Some(a), Some(b)) = (toks.get(from), toks.get(end - 1)) else {
        return Ok((end, None));
    };
    Ok((end, Some((a.start, b.end, ms))))
}
