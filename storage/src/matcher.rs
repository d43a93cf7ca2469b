//! Label matchers (`=`, `!=`, `=~`, `!~`) as PromQL and the series APIs use them.
//!
//! Regular expressions are fully anchored, as in Prometheus. A matcher on a
//! label that a series lacks sees the empty string.

use regex::Regex;

use crate::error::MatcherError;
use crate::labels::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                // (?s) makes `.` match newlines, as Go's RE2 does in Prometheus.
                let anchored = format!("^(?s:{value})$");
                Some(Regex::new(&anchored).map_err(|e| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?)
            }
            _ => None,
        };
        Ok(Self {
            name,
            op,
            value,
            re,
        })
    }

    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// True when the matcher also matches the empty string, i.e. it selects
    /// series that lack the label. Prometheus requires every selector to have
    /// at least one matcher that does not.
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }
}

/// Whether every matcher matches the label set.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_absent_is_empty() {
        let l =
            Labels::from_pairs([("__name__", "http_requests"), ("job", "api")]).expect("labels");
        let m = Matcher::new(MatchOp::Regex, "job", "ap").expect("regex");
        assert!(!m.matches(&l));
        let m = Matcher::new(MatchOp::Regex, "job", "a.*").expect("regex");
        assert!(m.matches(&l));
        let m = Matcher::new(MatchOp::NotEqual, "foo", "bar").expect("ne");
        assert!(m.matches(&l));
        let m = Matcher::new(MatchOp::Regex, "foo", ".*").expect("regex");
        assert!(m.matches(&l) && m.matches_empty());
        let m = Matcher::new(MatchOp::NotRegex, "job", "api|web").expect("nre");
        assert!(!m.matches(&l));
        assert!(Matcher::new(MatchOp::Regex, "job", "(").is_err());
    }
}
