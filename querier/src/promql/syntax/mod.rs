//! The PromQL front end: the syntax promql-parser 0.11 does not know.
//!
//! Prometheus 3 has syntax behind feature flags that promql-parser cannot
//! parse: the trim operators `</` and `>/` on native histograms, the
//! `anchored` and `smoothed` selector modifiers, duration expressions in
//! ranges, subquery steps and offsets (`[5m+step()]`, `offset min_of(1m,
//! range())`), and `info()` data-label selectors whose matchers all match the
//! empty string. Strata accepts them always (no flag).
//!
//! This module owns the step between the query text and promql-parser:
//!
//! 1. [`lexer`] splits the query into tokens (strings and comments are
//!    opaque, so look-alike text inside a string is never touched).
//! 2. [`rewrite`] walks the tokens once and edits the text into standard
//!    PromQL: duration expressions are evaluated ([`duration`]; they depend
//!    only on constants and the query's step and range, known before
//!    parsing) and replaced by a plain `<n>ms`; a trim operator becomes
//!    `atan2` (same precedence) and its ordinal among the `atan2` operators is
//!    remembered; a selector modifier is removed and a reserved label matcher
//!    [`MARKER`] naming it is added to its selector; an `info()` data-label
//!    selector gets a reserved matcher so that it is not empty.
//! 3. promql-parser parses the result, and [`parse`] strips every reserved
//!    matcher from the tree again, recording the selector it came from, and
//!    finds the `atan2` nodes that are really trims. The evaluator asks the
//!    resulting [`Extensions`] by node identity.
//!
//! A query text that already contains [`MARKER`] is rejected, so user input
//! cannot forge a modifier. Queries without extended syntax reach
//! promql-parser byte for byte as written.

mod duration;
pub(super) mod lexer;
pub(crate) mod strings;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, Expr, VectorSelector};

use super::EvalError;
use super::selectors::node_id;
use lexer::{Kind, Token};

/// The reserved label name that carries a selector modifier through
/// promql-parser. Queries containing it are rejected.
pub(crate) const MARKER: &str = "__strata_syntax__";

/// What the query's evaluation context is: duration expressions may use the
/// step (`step()`, 0 for instant queries) and the range (`range()`, end
/// minus start).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueryContext {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl QueryContext {
    /// An instant query at `t`: step and range are 0.
    pub fn instant(t: i64) -> Self {
        Self {
            start_ms: t,
            end_ms: t,
            step_ms: 0,
        }
    }

    pub fn range(start_ms: i64, end_ms: i64, step_ms: i64) -> Self {
        Self {
            start_ms,
            end_ms,
            step_ms,
        }
    }
}

/// A selector modifier of Prometheus 3's extended range selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SelectorMod {
    /// The window also takes the last sample at or before its start.
    Anchored,
    /// Values at the window's edges are interpolated between neighbours.
    Smoothed,
}

impl SelectorMod {
    fn name(self) -> &'static str {
        match self {
            SelectorMod::Anchored => "anchored",
            SelectorMod::Smoothed => "smoothed",
        }
    }

    /// The functions Prometheus allows the modifier on a range selector in.
    pub fn allowed_functions(self) -> &'static [&'static str] {
        match self {
            SelectorMod::Anchored => &["changes", "delta", "increase", "rate", "resets"],
            SelectorMod::Smoothed => &["delta", "increase", "rate"],
        }
    }
}

/// A trim operator on native histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trim {
    /// `</`: keep the observations below the bound.
    Upper,
    /// `>/`: keep the observations above the bound.
    Lower,
}

/// What the front end removed from the query, by AST node identity.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extensions {
    mods: HashMap<usize, SelectorMod>,
    trims: HashMap<usize, Trim>,
}

impl Extensions {
    /// The modifier of a vector selector (or of a range selector's inner
    /// vector selector).
    pub fn selector_mod(&self, vs: &VectorSelector) -> Option<SelectorMod> {
        self.mods.get(&node_id(vs)).copied()
    }

    /// The sample window to load for a selector that needs `[min, max]`:
    /// an anchored window also needs the sample before it, a smoothed one
    /// the samples on both sides (within the lookback delta).
    pub fn widen(&self, vs: &VectorSelector, min: i64, max: i64, lookback: i64) -> (i64, i64) {
        match self.selector_mod(vs) {
            None => (min, max),
            Some(SelectorMod::Anchored) => (min.saturating_sub(lookback), max),
            Some(SelectorMod::Smoothed) => {
                (min.saturating_sub(lookback), max.saturating_add(lookback))
            }
        }
    }

    /// Whether a binary node (parsed as `atan2`) is a trim operator.
    pub fn trim(&self, b: &BinaryExpr) -> Option<Trim> {
        self.trims.get(&node_id(b)).copied()
    }
}

/// A parsed query: the tree (boxed, so node identities stay put) and its
/// extensions.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub expr: Box<Expr>,
    pub ext: Extensions,
}

impl std::ops::Deref for Parsed {
    type Target = Expr;
    fn deref(&self) -> &Expr {
        &self.expr
    }
}

/// The standard PromQL text of a query and what was taken out of it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rewritten {
    pub text: String,
    /// For each `atan2` operator of `text` in order, whether it is a trim.
    pub atan2: Vec<Option<Trim>>,
    /// Some extension was used (the tree needs post-processing).
    pub extended: bool,
}

/// Parses a query with the extended syntax.
pub(crate) fn parse(query: &str, ctx: QueryContext) -> Result<Parsed, EvalError> {
    let rw = rewrite(query, ctx).map_err(EvalError::Parse)?;
    let expr = parse_standard(&rw.text)?;
    let mut parsed = Parsed {
        expr: Box::new(expr),
        ext: Extensions::default(),
    };
    if rw.extended {
        let mut mods = Vec::new();
        strip_markers(&mut parsed.expr, &mut mods)?;
        parsed.ext.mods = mods.into_iter().collect();
        let mut atan2 = Vec::new();
        collect_atan2(&parsed.expr, &mut atan2);
        if atan2.len() != rw.atan2.len() {
            return Err(EvalError::Parse(
                "could not place the trim operators of the query".into(),
            ));
        }
        for (id, t) in atan2.into_iter().zip(rw.atan2) {
            if let Some(t) = t {
                parsed.ext.trims.insert(id, t);
            }
        }
        check_modifier_use(&parsed.expr, &parsed.ext, false)?;
    }
    Ok(parsed)
}

/// promql-parser on standard text.
pub(crate) fn parse_standard(text: &str) -> Result<Expr, EvalError> {
    // promql-parser 0.11 panics on some inputs (a number too large for a
    // duration, `x[1e30]`, found by fuzzing); a query must fail, not the
    // request's task.
    std::panic::catch_unwind(|| promql_parser::parser::parse(text))
        .unwrap_or_else(|_| Err("invalid query: the PromQL parser failed on it".to_string()))
        .map_err(EvalError::Parse)
}

/// One text edit: replace `start..end` with `with`.
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// The selector a modifier written now would apply to: where its marker
/// goes and how.
#[derive(Clone, Copy)]
struct SelectorSite {
    /// Byte offset to insert at.
    at: usize,
    /// Insert `{...}` (a bare metric name) rather than `,...` inside braces.
    braces: bool,
    /// Inside braces that are empty or end with a comma: no comma needed.
    no_comma: bool,
    /// The selector has a subquery range: modifiers are not allowed.
    subquery: bool,
}

impl SelectorSite {
    fn marker(&self, value: &str) -> String {
        if self.braces {
            format!("{{{MARKER}=\"{value}\"}}")
        } else if self.no_comma {
            format!("{MARKER}=\"{value}\"")
        } else {
            format!(",{MARKER}=\"{value}\"")
        }
    }
}

/// Keywords that never name a selector.
const KEYWORDS: [&str; 12] = [
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
];

/// Rewrites the extended syntax of `query` into standard PromQL (see the
/// module documentation). A query the lexer cannot read is returned as is:
/// promql-parser reports its error.
pub(crate) fn rewrite(query: &str, ctx: QueryContext) -> Result<Rewritten, String> {
    if query.to_ascii_lowercase().contains(MARKER) {
        return Err(format!(
            "the label name {MARKER} is reserved by Strata and cannot be used in a query"
        ));
    }
    let toks = match lexer::tokenize(query) {
        Ok(t) => t,
        Err(_) => {
            return Ok(Rewritten {
                text: query.to_string(),
                atan2: Vec::new(),
                extended: false,
            });
        }
    };
    let mut edits: Vec<Edit> = Vec::new();
    let mut atan2 = Vec::new();
    let mut extended = false;
    // The last token ended an operand (so `-` is binary, an identifier is
    // an operator keyword or a modifier).
    let mut after_operand = false;
    let mut site: Option<SelectorSite> = None;
    // Paren depths at which an `info(` call's arguments are.
    let mut info_depths: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    // The next token starts `info`'s second argument.
    let mut info_arg = false;
    let mut i = 0;
    while let Some(&t) = toks.get(i) {
        let starts_info_arg = std::mem::take(&mut info_arg);
        let text = t.text(query);
        match t.kind {
            Kind::Ident => {
                let lower = text.to_ascii_lowercase();
                let next = toks.get(i + 1).map(|n| n.kind);
                if after_operand && (lower == "anchored" || lower == "smoothed") {
                    let m = if lower == "anchored" {
                        SelectorMod::Anchored
                    } else {
                        SelectorMod::Smoothed
                    };
                    let s = match site.take() {
                        Some(s) if !s.subquery => s,
                        _ => {
                            return Err(format!(
                                "the {} modifier at position {} must follow a vector or range selector",
                                m.name(),
                                t.start
                            ));
                        }
                    };
                    edits.push(Edit {
                        start: s.at,
                        end: s.at,
                        with: s.marker(m.name()),
                    });
                    edits.push(Edit {
                        start: t.start,
                        end: t.end,
                        with: " ".into(),
                    });
                    extended = true;
                    i += 1;
                    continue;
                }
                if after_operand && lower == "offset" {
                    let (end, rewritten) = duration::offset(query, &toks, i + 1, ctx)?;
                    match rewritten {
                        // promql-parser refuses `offset 0ms`; no offset is
                        // the same thing.
                        Some((_, e, 0)) => edits.push(Edit {
                            start: t.start,
                            end: e,
                            with: " ".into(),
                        }),
                        Some((s, e, ms)) => edits.push(Edit {
                            start: s,
                            end: e,
                            with: format!(" {ms}ms"),
                        }),
                        None => {}
                    }
                    i = end;
                    continue;
                }
                if KEYWORDS.contains(&lower.as_str()) {
                    if lower == "atan2" {
                        atan2.push(None);
                    }
                    after_operand = false;
                    site = None;
                    i += 1;
                    // Label lists of grouping and matching modifiers.
                    if matches!(
                        lower.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    ) && next == Some(Kind::LParen)
                    {
                        i = matching(&toks, i).map_or(toks.len(), |c| c + 1);
                    }
                    continue;
                }
                if next == Some(Kind::LParen) {
                    // A function or aggregation call.
                    if lower == "info" && !after_operand {
                        info_depths.push(depth + 1);
                    }
                    after_operand = false;
                    site = None;
                } else if next == Some(Kind::LBrace) {
                    after_operand = false;
                } else {
                    after_operand = true;
                    let number = matches!(lower.as_str(), "inf" | "nan");
                    site = (!number).then_some(SelectorSite {
                        at: t.end,
                        braces: true,
                        no_comma: false,
                        subquery: false,
                    });
                }
                i += 1;
            }
            Kind::LBrace => {
                let close = matching(&toks, i).ok_or("unclosed '{' in the query")?;
                let inner_empty = close == i + 1;
                let ends_comma = toks.get(close - 1).is_some_and(|p| p.kind == Kind::Comma);
                let close_at = toks.get(close).map_or(query.len(), |c| c.start);
                let s = SelectorSite {
                    at: close_at,
                    braces: false,
                    no_comma: inner_empty || ends_comma,
                    subquery: false,
                };
                if starts_info_arg
                    && i > 0
                    && toks.get(i - 1).is_some_and(|p| p.kind == Kind::Comma)
                {
                    edits.push(Edit {
                        start: close_at,
                        end: close_at,
                        with: s.marker("info"),
                    });
                    extended = true;
                }
                // After the info marker, further insertions need a comma.
                site = Some(SelectorSite {
                    no_comma: s.no_comma && !starts_info_arg,
                    ..s
                });
                after_operand = true;
                i = close + 1;
            }
            Kind::LBracket => {
                let close = matching(&toks, i).ok_or("unclosed '[' in the query")?;
                let (subquery, rewritten) = duration::brackets(query, &toks, i + 1, close, ctx)?;
                edits.extend(rewritten.into_iter().map(|(start, end, with)| Edit {
                    start,
                    end,
                    with,
                }));
                if subquery && let Some(s) = site.as_mut() {
                    s.subquery = true;
                }
                after_operand = true;
                i = close + 1;
            }
            Kind::At => {
                // `@ <number>`, `@ -<number>`, `@ start()`, `@ end()`.
                i += 1;
                if toks
                    .get(i)
                    .is_some_and(|n| n.kind == Kind::Op && matches!(n.text(query), "-" | "+"))
                {
                    i += 1;
                }
                match toks.get(i).map(|n| n.kind) {
                    Some(Kind::Number | Kind::Duration) => i += 1,
                    Some(Kind::Ident)
                        if toks.get(i + 1).map(|n| n.kind) == Some(Kind::LParen)
                            && toks.get(i + 2).map(|n| n.kind) == Some(Kind::RParen) =>
                    {
                        i += 3
                    }
                    _ => {}
                }
                after_operand = true;
            }
            Kind::TrimUpper | Kind::TrimLower => {
                atan2.push(Some(if t.kind == Kind::TrimUpper {
                    Trim::Upper
                } else {
                    Trim::Lower
                }));
                edits.push(Edit {
                    start: t.start,
                    end: t.end,
                    with: " atan2 ".into(),
                });
                extended = true;
                after_operand = false;
                site = None;
                i += 1;
            }
            Kind::LParen => {
                depth += 1;
                after_operand = false;
                site = None;
                i += 1;
            }
            Kind::RParen => {
                if info_depths.last() == Some(&depth) {
                    info_depths.pop();
                }
                depth = depth.saturating_sub(1);
                after_operand = true;
                site = None;
                i += 1;
            }
            Kind::Comma => {
                info_arg = info_depths.last() == Some(&depth);
                after_operand = false;
                site = None;
                i += 1;
            }
            Kind::Number | Kind::Duration | Kind::Str => {
                after_operand = true;
                site = None;
                i += 1;
            }
            Kind::RBrace | Kind::RBracket | Kind::Colon | Kind::Op => {
                after_operand = false;
                site = None;
                i += 1;
            }
        }
    }
    extended |= !edits.is_empty();
    // Literals spelling bytes that are not UTF-8 (see `strings`); they need
    // no post-processing of the tree.
    edits.extend(toks.iter().filter(|t| t.kind == Kind::Str).filter_map(|t| {
        strings::substitute(t.text(query)).map(|with| Edit {
            start: t.start,
            end: t.end,
            with,
        })
    }));
    Ok(Rewritten {
        text: apply(query, edits),
        atan2,
        extended,
    })
}

/// The index of the token closing the bracket opened at `open`.
pub(crate) fn matching(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.kind {
            Kind::LParen | Kind::LBrace | Kind::LBracket => depth += 1,
            Kind::RParen | Kind::RBrace | Kind::RBracket => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn apply(src: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(src.len() + 32);
    let mut pos = 0;
    for e in edits {
        if e.start < pos {
            continue;
        }
        out.push_str(src.get(pos..e.start).unwrap_or(""));
        out.push_str(&e.with);
        pos = e.end;
    }
    out.push_str(src.get(pos..).unwrap_or(""));
    out
}

/// Removes the reserved matchers, recording the modifiers they carried.
fn strip_markers(e: &mut Expr, mods: &mut Vec<(usize, SelectorMod)>) -> Result<(), EvalError> {
    fn strip_vs(vs: &mut VectorSelector, mods: &mut Vec<(usize, SelectorMod)>) {
        let mut found = None;
        let mut keep = |m: &promql_parser::label::Matcher| {
            if m.name != MARKER {
                return true;
            }
            match m.value.as_str() {
                "anchored" => found = Some(SelectorMod::Anchored),
                "smoothed" => found = Some(SelectorMod::Smoothed),
                _ => {}
            }
            false
        };
        vs.matchers.matchers.retain(&mut keep);
        for g in vs.matchers.or_matchers.iter_mut() {
            g.retain(&mut keep);
        }
        if let Some(m) = found {
            mods.push((node_id(&*vs), m));
        }
    }
    match e {
        Expr::VectorSelector(vs) => strip_vs(vs, mods),
        Expr::MatrixSelector(ms) => strip_vs(&mut ms.vs, mods),
        Expr::Aggregate(a) => {
            strip_markers(&mut a.expr, mods)?;
            if let Some(p) = a.param.as_mut() {
                strip_markers(p, mods)?;
            }
        }
        Expr::Unary(u) => strip_markers(&mut u.expr, mods)?,
        Expr::Binary(b) => {
            strip_markers(&mut b.lhs, mods)?;
            strip_markers(&mut b.rhs, mods)?;
        }
        Expr::Paren(p) => strip_markers(&mut p.expr, mods)?,
        Expr::Subquery(sq) => strip_markers(&mut sq.expr, mods)?,
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                strip_markers(a, mods)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => {
            return Err(EvalError::Unsupported("extension expressions".into()));
        }
    }
    Ok(())
}

/// The `atan2` binary nodes in source order (in-order: left operand, the
/// node, right operand; an aggregation's parameter comes first in the text).
fn collect_atan2(e: &Expr, out: &mut Vec<usize>) {
    match e {
        Expr::Binary(b) => {
            collect_atan2(&b.lhs, out);
            if b.op.to_string() == "atan2" {
                out.push(node_id(b));
            }
            collect_atan2(&b.rhs, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect_atan2(p, out);
            }
            collect_atan2(&a.expr, out);
        }
        Expr::Unary(u) => collect_atan2(&u.expr, out),
        Expr::Paren(p) => collect_atan2(&p.expr, out),
        Expr::Subquery(sq) => collect_atan2(&sq.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_atan2(a, out)),
        _ => {}
    }
}

/// Prometheus allows a modified range selector only as the argument of
/// certain functions.
fn check_modifier_use(e: &Expr, ext: &Extensions, in_call: bool) -> Result<(), EvalError> {
    match e {
        Expr::MatrixSelector(ms) if !in_call => {
            if let Some(m) = ext.selector_mod(&ms.vs) {
                return Err(EvalError::Parse(format!(
                    "{} modifier can only be used with: {} - not as a range vector on its own",
                    m.name(),
                    m.allowed_functions().join(", ")
                )));
            }
            Ok(())
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                if let Expr::MatrixSelector(ms) = a.as_ref() {
                    if let Some(m) = ext.selector_mod(&ms.vs)
                        && !m.allowed_functions().contains(&c.func.name)
                    {
                        return Err(EvalError::Parse(format!(
                            "{} modifier can only be used with: {} - not with {}",
                            m.name(),
                            m.allowed_functions().join(", "),
                            c.func.name
                        )));
                    }
                    continue;
                }
                check_modifier_use(a, ext, false)?;
            }
            Ok(())
        }
        Expr::Aggregate(a) => {
            check_modifier_use(&a.expr, ext, false)?;
            match &a.param {
                Some(p) => check_modifier_use(p, ext, false),
                None => Ok(()),
            }
        }
        Expr::Unary(u) => check_modifier_use(&u.expr, ext, false),
        Expr::Binary(b) => {
            check_modifier_use(&b.lhs, ext, false)?;
            check_modifier_use(&b.rhs, ext, false)
        }
        Expr::Paren(p) => check_modifier_use(&p.expr, ext, false),
        Expr::Subquery(sq) => check_modifier_use(&sq.expr, ext, false),
        _ => Ok(()),
    }
}
