//! Postings of one object's series index: label name -> value -> positions
//! of the series that carry it, so a selector such as
//! `http_requests_total{job="api"}` looks two lists up instead of testing
//! every series of every block. Built once per object (objects never
//! change) and cached beside the series index.

use std::collections::HashMap;

use crate::matcher::{MatchOp, Matcher, matches_all};
use crate::segment::SegmentIndex;

#[derive(Debug, Default)]
pub struct Postings {
    /// Label name -> value -> positions in the index's series (ascending).
    by_name: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl Postings {
    pub fn new(index: &SegmentIndex) -> Self {
        let mut by_name: HashMap<String, HashMap<String, Vec<u32>>> = HashMap::new();
        for (pos, s) in index.series.iter().enumerate() {
            let Ok(pos) = u32::try_from(pos) else { break };
            for l in s.labels.iter() {
                let values = match by_name.get_mut(l.name.as_str()) {
                    Some(v) => v,
                    None => by_name.entry(l.name.clone()).or_default(),
                };
                match values.get_mut(l.value.as_str()) {
                    Some(p) => p.push(pos),
                    None => {
                        values.insert(l.value.clone(), vec![pos]);
                    }
                }
            }
        }
        Self { by_name }
    }

    /// Positions (ascending) in `index` of the series matching all
    /// `matchers` (every series when there are none). `index` must be the
    /// one these postings were built from.
    pub fn select(&self, index: &SegmentIndex, matchers: &[Matcher]) -> Vec<usize> {
        // Candidates: series that must carry a label for some matcher to
        // hold (a matcher that does not match the empty string). Every
        // matcher is then checked on them, so this only narrows.
        let mut candidates: Option<Vec<u32>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let Some(values) = self.by_name.get(&m.name) else {
                return Vec::new();
            };
            let list: Vec<u32> = match m.op {
                MatchOp::Equal => values.get(&m.value).cloned().unwrap_or_default(),
                _ => {
                    let mut all: Vec<u32> = values
                        .iter()
                        .filter(|(v, _)| m.matches_value(v))
                        .flat_map(|(_, p)| p.iter().copied())
                        .collect();
                    all.sort_unstable();
                    all
                }
            };
            candidates = Some(match candidates {
                None => list,
                Some(c) => intersect(&c, &list),
            });
            if candidates.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let check = |pos: usize| {
            index
                .series
                .get(pos)
                .is_some_and(|s| matches_all(matchers, &s.labels))
        };
        match candidates {
            Some(c) => c
                .into_iter()
                .map(|p| p as usize)
                .filter(|&p| check(p))
                .collect(),
            None => (0..index.series.len()).filter(|&p| check(p)).collect(),
        }
    }
}

/// Both ascending lists' common elements.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::segment::IndexedSeries;

    fn index() -> SegmentIndex {
        let mut series: Vec<IndexedSeries> = [
            vec![("__name__", "up"), ("job", "api"), ("instance", "a")],
            vec![("__name__", "up"), ("job", "api"), ("instance", "b")],
            vec![("__name__", "up"), ("job", "node")],
            vec![("__name__", "rate"), ("job", "api")],
            vec![("__name__", "rate"), ("job", "db"), ("instance", "a")],
        ]
        .into_iter()
        .map(|p| {
            let labels = Labels::from_pairs(p).expect("labels");
            IndexedSeries {
                id: labels.series_id(),
                labels,
            }
        })
        .collect();
        series.sort_by_key(|s| s.id);
        SegmentIndex {
            min_time: 0,
            max_time: 1,
            samples: 5,
            series,
        }
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).expect("matcher")
    }

    /// Postings give exactly what testing every series gives.
    #[test]
    fn select_equals_a_full_scan_for_every_operator() {
        let idx = index();
        let p = Postings::new(&idx);
        let cases: Vec<Vec<Matcher>> = vec![
            vec![],
            vec![m(MatchOp::Equal, "__name__", "up")],
            vec![
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::Equal, "job", "api"),
            ],
            vec![m(MatchOp::Equal, "job", "nope")],
            vec![m(MatchOp::Equal, "nope", "x")],
            vec![m(MatchOp::Equal, "instance", "")],
            vec![m(MatchOp::NotEqual, "instance", "a")],
            vec![m(MatchOp::Regex, "job", "api|node")],
            vec![m(MatchOp::Regex, "job", ".*")],
            vec![m(MatchOp::Regex, "instance", "a|")],
            vec![m(MatchOp::NotRegex, "job", "api")],
            vec![
                m(MatchOp::Regex, "__name__", "u.*"),
                m(MatchOp::NotEqual, "instance", "b"),
            ],
        ];
        for ms in cases {
            let want: Vec<usize> = (0..idx.series.len())
                .filter(|&i| matches_all(&ms, &idx.series[i].labels))
                .collect();
            assert_eq!(p.select(&idx, &ms), want, "matchers {ms:?}");
        }
    }
}
