//! Annotation expectations of an eval (`expect warn`, `expect info`,
//! `expect no_warn`, `expect no_info`, each optionally with `msg:` or
//! `regex:`; the old `eval_warn`/`eval_info` forms) and their check against
//! what the engine reported, with the rules of Prometheus' runner:
//!
//! * every `expect warn`/`expect info` line must match at least one
//!   annotation of its kind (a line without a matcher matches any);
//! * once a kind has such lines, every annotation of that kind must match one
//!   of them;
//! * `no_warn`/`no_info`: no annotation of that kind at all;
//! * a kind with no line is not checked.

use regex::Regex;

use crate::promql::Annotations;

#[derive(Clone, Debug)]
enum Matcher {
    Any,
    Msg(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Msg(m) => m == s,
            Matcher::Regex(r) => r.is_match(s),
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Any => "any".into(),
            Matcher::Msg(m) => format!("{m:?}"),
            Matcher::Regex(r) => format!("/{}/", r.as_str()),
        }
    }
}

/// The expectations for one kind (warnings or infos).
#[derive(Clone, Debug, Default)]
struct KindExpect {
    want: Vec<Matcher>,
    none: bool,
}

impl KindExpect {
    fn check(&self, kind: &str, got: &[String]) -> Result<(), String> {
        if self.none && !got.is_empty() {
            return Err(format!("expected no {kind} annotation, got {got:?}"));
        }
        for m in &self.want {
            if !got.iter().any(|g| m.matches(g)) {
                return Err(format!(
                    "expected a {kind} annotation matching {}, got {got:?}",
                    m.describe()
                ));
            }
        }
        if !self.want.is_empty()
            && let Some(extra) = got.iter().find(|g| !self.want.iter().any(|m| m.matches(g)))
        {
            return Err(format!("unexpected {kind} annotation {extra:?}"));
        }
        Ok(())
    }
}

/// All annotation expectations of one eval.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    warn: KindExpect,
    info: KindExpect,
}

impl Expectations {
    /// From the eval's annotation lines as the parser kept them
    /// (`expect ...` lines and `eval_warn`/`eval_info`).
    pub fn parse(lines: &[String]) -> Result<Self, String> {
        let mut e = Expectations::default();
        for l in lines {
            let l = l.trim();
            let (head, matcher) = match l.split_once(':') {
                Some((h, rest)) => {
                    let h = h.trim_end();
                    let (h, kind) = h
                        .rsplit_once(char::is_whitespace)
                        .ok_or_else(|| format!("invalid annotation expectation {l:?}"))?;
                    let text = rest.trim().to_string();
                    let m = match kind {
                        "msg" => Matcher::Msg(text),
                        "regex" => Matcher::Regex(
                            Regex::new(&text)
                                .map_err(|err| format!("invalid regex {text:?}: {err}"))?,
                        ),
                        _ => return Err(format!("invalid annotation expectation {l:?}")),
                    };
                    (h.trim_end(), m)
                }
                None => (l, Matcher::Any),
            };
            let what = head
                .strip_prefix("expect")
                .map(str::trim)
                .or_else(|| head.strip_prefix("eval_"))
                .ok_or_else(|| format!("invalid annotation expectation {l:?}"))?;
            match what {
                "warn" => e.warn.want.push(matcher),
                "info" => e.info.want.push(matcher),
                "no_warn" | "no_info" if !matches!(matcher, Matcher::Any) => {
                    return Err(format!("{what} takes no message: {l:?}"));
                }
                "no_warn" => e.warn.none = true,
                "no_info" => e.info.none = true,
                _ => return Err(format!("invalid annotation expectation {l:?}")),
            }
        }
        Ok(e)
    }

    /// How many expectations there are (lines).
    pub fn len(&self) -> usize {
        self.warn.want.len()
            + self.info.want.len()
            + usize::from(self.warn.none)
            + usize::from(self.info.none)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn check(&self, got: &Annotations) -> Result<(), String> {
        self.warn.check("warning", &got.warnings)?;
        self.info.check("info", &got.infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(lines: &[&str]) -> Expectations {
        Expectations::parse(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("parse")
    }

    fn got(w: &[&str], i: &[&str]) -> Annotations {
        Annotations {
            warnings: w.iter().map(|s| s.to_string()).collect(),
            infos: i.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_of_prometheus_runner() {
        // No expectation: nothing checked.
        assert!(exp(&[]).check(&got(&["w"], &["i"])).is_ok());
        // `expect warn` needs one, and then any warning is fine.
        assert!(exp(&["expect warn"]).check(&got(&[], &["i"])).is_err());
        assert!(
            exp(&["expect warn"])
                .check(&got(&["a", "b"], &["i"]))
                .is_ok()
        );
        assert!(exp(&["eval_info"]).check(&got(&[], &[])).is_err());
        // no_warn / no_info.
        assert!(exp(&["expect no_warn"]).check(&got(&["w"], &[])).is_err());
        assert!(exp(&["expect no_info"]).check(&got(&["w"], &[])).is_ok());
        assert!(exp(&["expect no_info"]).check(&got(&[], &["i"])).is_err());
        // msg: exact, and every warning must be expected.
        let e = exp(&["expect warn msg: PromQL warning: x (1:1)"]);
        assert!(e.check(&got(&["PromQL warning: x (1:1)"], &[])).is_ok());
        assert!(e.check(&got(&["PromQL warning: x (1:2)"], &[])).is_err());
        assert!(
            e.check(&got(
                &["PromQL warning: x (1:1)", "PromQL warning: y (1:1)"],
                &[]
            ))
            .is_err()
        );
        // regex: unanchored match.
        let e = exp(&[r"expect info regex: fixed for .* \(1:2[0-9]\)"]);
        assert!(
            e.check(&got(&[], &["PromQL info: fixed for m (1:25)"]))
                .is_ok()
        );
        assert!(
            e.check(&got(&[], &["PromQL info: fixed for m (1:5)"]))
                .is_err()
        );
        assert_eq!(exp(&["expect warn", "expect no_info"]).len(), 2);
        assert!(Expectations::parse(&["expect no_warn msg: x".to_string()]).is_err());
    }
}
