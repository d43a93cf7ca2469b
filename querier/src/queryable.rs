//! What the engine reads from: one tenant of a [`Storage`] (production and
//! the conformance runner), or a plain in-memory map (unit tests, debugging).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use storage::histogram::Histogram;
use storage::matcher::matches_all;
use storage::sidecar::HistogramSeries;
use storage::step_grid::StepGrid;
use storage::storage::Skipped;
use storage::{Labels, Matcher, Sample, Series, Storage, TenantId};

use crate::promql::{EvalError, Queryable};

/// Warnings the reads of one request produced (corrupt objects read
/// around), shared by its queryables and added to the response.
#[derive(Clone, Debug, Default)]
pub struct ReadWarnings(Arc<Mutex<BTreeSet<String>>>);

impl ReadWarnings {
    pub fn add(&self, skipped: Vec<Skipped>) {
        if skipped.is_empty() {
            return;
        }
        if let Ok(mut w) = self.0.lock() {
            w.extend(skipped.iter().map(ToString::to_string));
        }
    }

    /// The warnings so far, sorted, each once.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w).into_iter().collect())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct TenantQueryable {
    pub storage: Storage,
    pub tenant: TenantId,
    /// Where corrupt objects that reads skipped are reported.
    pub warnings: ReadWarnings,
}

#[async_trait]
impl Queryable for TenantQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let (series, skipped) = self
            .storage
            .select_reporting(&self.tenant, matchers, start_ms, end_ms)
            .await
            .map_err(|e| EvalError::Storage(e.to_string()))?;
        self.warnings.add(skipped);
        Ok(series)
    }

    async fn select_at_steps(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        grid: StepGrid,
    ) -> Result<Vec<Series>, EvalError> {
        let (series, skipped) = self
            .storage
            .select_reporting_at_steps(&self.tenant, matchers, start_ms, end_ms, Some(grid))
            .await
            .map_err(|e| EvalError::Storage(e.to_string()))?;
        self.warnings.add(skipped);
        Ok(series)
    }

    /// From the tenant's sidecars; the engine asks for them next to the
    /// floats, so the two reads overlap.
    async fn select_histograms(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<HistogramSeries>, EvalError> {
        let (series, skipped) = self
            .storage
            .select_histograms_reporting(&self.tenant, matchers, start_ms, end_ms)
            .await
            .map_err(|e| EvalError::Storage(e.to_string()))?;
        self.warnings.add(skipped);
        Ok(series)
    }
}

/// In-memory [`Queryable`]: no object store, no segment format.
#[derive(Clone, Debug, Default)]
pub struct MemQueryable {
    series: BTreeMap<Labels, BTreeMap<i64, f64>>,
    histograms: BTreeMap<Labels, BTreeMap<i64, Histogram>>,
}

impl MemQueryable {
    /// Adds samples; a later sample at the same timestamp replaces the earlier.
    pub fn write(&mut self, series: &[Series]) {
        for s in series {
            let points = self.series.entry(s.labels.clone()).or_default();
            for p in &s.samples {
                points.insert(p.t, p.v);
            }
        }
    }

    /// Adds native histogram samples, by their `timestamp`.
    pub fn write_histograms(&mut self, series: &[HistogramSeries]) {
        for s in series {
            let points = self.histograms.entry(s.labels.clone()).or_default();
            for h in &s.histograms {
                points.insert(h.timestamp, h.clone());
            }
        }
    }
}

#[async_trait]
impl Queryable for MemQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        Ok(self
            .series
            .iter()
            .filter(|(l, _)| matches_all(matchers, l))
            .map(|(l, pts)| Series {
                labels: l.clone(),
                samples: pts
                    .range(start_ms..=end_ms)
                    .map(|(t, v)| Sample::new(*t, *v))
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    async fn select_histograms(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<HistogramSeries>, EvalError> {
        Ok(self
            .histograms
            .iter()
            .filter(|(l, _)| matches_all(matchers, l))
            .map(|(l, pts)| HistogramSeries {
                labels: l.clone(),
                histograms: pts
                    .range(start_ms..=end_ms)
                    .map(|(_, h)| h.clone())
                    .collect(),
            })
            .filter(|s| !s.histograms.is_empty())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histograms written as ingest writes them (a sidecar) are selected by
    /// matchers and time, and the engine reads them.
    #[tokio::test]
    async fn tenant_queryable_reads_histograms_from_sidecars() {
        use crate::promql::{Engine, FloatHistogram, Value};
        use storage::sidecar::Sidecar;

        let q = TenantQueryable {
            storage: Storage::in_memory(),
            tenant: TenantId::new("t").expect("tenant"),
            warnings: ReadWarnings::default(),
        };
        let l = Labels::from_pairs([("__name__", "h"), ("a", "1")]).expect("labels");
        let h = FloatHistogram {
            count: 3.0,
            sum: 4.0,
            positive: vec![(0, 3.0)],
            ..FloatHistogram::default()
        };
        let sidecar = Sidecar {
            histograms: vec![HistogramSeries {
                labels: l.clone(),
                histograms: vec![h.to_stored(1_000), h.clone().scale(2.0).to_stored(2_000)],
            }],
            ..Sidecar::default()
        };
        q.storage
            .write_sidecar(&q.tenant, &sidecar)
            .await
            .expect("write");
        let got = q
            .select_histograms(&[Matcher::eq("a", "1")], 1_500, 3_000)
            .await
            .expect("select");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].histograms.len(), 1);
        assert!(
            q.select_histograms(&[Matcher::eq("a", "2")], 0, 3_000)
                .await
                .expect("select")
                .is_empty()
        );
        let v = Engine::default()
            .instant_query(&q, "histogram_count(h)", 2_000)
            .await
            .expect("query");
        let Value::Vector(v) = v else { panic!("{v:?}") };
        assert_eq!(v[0].sample.v, 6.0);
    }

    #[tokio::test]
    async fn mem_queryable_selects_by_matchers_and_time() {
        let mut m = MemQueryable::default();
        let l = Labels::from_pairs([("__name__", "m"), ("a", "1")]).expect("labels");
        m.write(&[Series {
            labels: l.clone(),
            samples: vec![Sample::new(0, 1.0), Sample::new(10, 2.0)],
        }]);
        let got = m
            .select(&[Matcher::eq("a", "1")], 5, 20)
            .await
            .expect("select");
        assert_eq!(
            got,
            vec![Series {
                labels: l,
                samples: vec![Sample::new(10, 2.0)]
            }]
        );
        assert!(
            m.select(&[Matcher::eq("a", "2")], 0, 20)
                .await
                .expect("select")
                .is_empty()
        );
        assert!(m.select(&[], 11, 20).await.expect("select").is_empty());
    }
}
