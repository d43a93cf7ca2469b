//! The two SQL tables of one tenant, as DataFusion [`TableProvider`]s:
//!
//! - `series`: `series_id UInt64`, `metric_name Utf8`, `labels Map<Utf8, Utf8>`
//!   (every label, `__name__` included), answered from series indexes alone;
//! - `samples`: `series_id UInt64`, `metric_name Utf8`,
//!   `timestamp Timestamp(ms, UTC)`, `value Float64`.
//!
//! Filters on `timestamp` (comparisons, `BETWEEN`), `series_id` and
//! `metric_name` (`=`, `IN`) are pushed into the storage read (blocks and
//! segments outside the time range are never opened; only matching series
//! are scanned). Pushdown is inexact: DataFusion applies every filter again.
//! `samples` is read in slices of series ids, so memory holds one slice at a
//! time and a `LIMIT` stops reading early; past `max_samples` samples the
//! scan fails with "resources exhausted".

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    Array, ArrayRef, Float64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use storage::{Labels, METRIC_NAME, MatchOp, Matcher, SeriesId, Storage, TenantId};

pub const COL_SERIES_ID: &str = "series_id";
pub const COL_METRIC_NAME: &str = "metric_name";
pub const COL_LABELS: &str = "labels";
pub const COL_TIMESTAMP: &str = "timestamp";
pub const COL_VALUE: &str = "value";

/// Rows per record batch handed to DataFusion.
const BATCH_ROWS: usize = 8192;
/// Samples read from storage at once (one slice of series ids).
const SAMPLES_PER_SLICE: u64 = 1 << 20;
/// Most series per slice, however few samples each has.
const MAX_SERIES_PER_SLICE: usize = 10_000;

pub fn series_schema() -> SchemaRef {
    let labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .finish()
        .data_type()
        .clone();
    Arc::new(Schema::new(vec![
        Field::new(COL_SERIES_ID, DataType::UInt64, false),
        Field::new(COL_METRIC_NAME, DataType::Utf8, false),
        Field::new(COL_LABELS, labels, false),
    ]))
}

pub fn samples_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(COL_SERIES_ID, DataType::UInt64, false),
        Field::new(COL_METRIC_NAME, DataType::Utf8, false),
        Field::new(
            COL_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(COL_VALUE, DataType::Float64, false),
    ]))
}

/// What the filters of a scan allow, widened where unsure (pushdown is
/// inexact, so a superset is always correct).
#[derive(Clone, Debug, PartialEq)]
pub struct Pushdown {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Only these series ids (when `Some`).
    pub ids: Option<BTreeSet<SeriesId>>,
    /// Only these metric names (when `Some`).
    pub names: Option<BTreeSet<String>>,
}

impl Default for Pushdown {
    fn default() -> Self {
        Self {
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            ids: None,
            names: None,
        }
    }
}

/// Values either set allows (`None`: any value).
fn unite<T: Ord>(a: Option<BTreeSet<T>>, b: Option<BTreeSet<T>>) -> Option<BTreeSet<T>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    }
}

fn intersect<T: Ord + Clone>(slot: &mut Option<BTreeSet<T>>, with: BTreeSet<T>) {
    *slot = Some(match slot.take() {
        None => with,
        Some(old) => old.intersection(&with).cloned().collect(),
    });
}

impl Pushdown {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut p = Self::default();
        for f in filters {
            p.add(f);
        }
        p
    }

    /// True when no row can pass.
    pub fn is_empty(&self) -> bool {
        self.start_ms > self.end_ms
            || self.ids.as_ref().is_some_and(BTreeSet::is_empty)
            || self.names.as_ref().is_some_and(BTreeSet::is_empty)
    }

    fn add(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.add(left);
                    self.add(right);
                    return;
                }
                if *op == Operator::Or {
                    // Short IN lists arrive as chains of OR.
                    let (mut a, mut b) = (Self::default(), Self::default());
                    a.add(left);
                    b.add(right);
                    self.restrict(a.union(b));
                    return;
                }
                let (col, op, lit) = match (column(left), right.as_ref()) {
                    (Some(c), Expr::Literal(v, _)) => (c, *op, v),
                    _ => match (left.as_ref(), column(right), op.swap()) {
                        (Expr::Literal(v, _), Some(c), Some(op)) => (c, op, v),
                        _ => return,
                    },
                };
                self.compare(col, op, lit);
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Some(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                    (column(expr), low.as_ref(), high.as_ref())
                {
                    self.compare(c, Operator::GtEq, lo);
                    self.compare(c, Operator::LtEq, hi);
                }
            }
            Expr::InList(list) if !list.negated => {
                let Some(c) = column(&list.expr) else {
                    return;
                };
                let values: Option<Vec<&ScalarValue>> = list
                    .list
                    .iter()
                    .map(|v| match v {
                        Expr::Literal(v, _) => Some(v),
                        _ => None,
                    })
                    .collect();
                let Some(values) = values else { return };
                match c {
                    COL_SERIES_ID => {
                        if let Some(ids) = values.iter().map(|v| scalar_u64(v)).collect() {
                            intersect(&mut self.ids, ids);
                        }
                    }
                    COL_METRIC_NAME => {
                        if let Some(names) = values.iter().map(|v| scalar_str(v)).collect() {
                            intersect(&mut self.names, names);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Rows either allows.
    fn union(self, o: Self) -> Self {
        if self.is_empty() {
            return o;
        }
        if o.is_empty() {
            return self;
        }
        Self {
            start_ms: self.start_ms.min(o.start_ms),
            end_ms: self.end_ms.max(o.end_ms),
            ids: unite(self.ids, o.ids),
            names: unite(self.names, o.names),
        }
    }

    /// Rows both allow.
    fn restrict(&mut self, o: Self) {
        self.start_ms = self.start_ms.max(o.start_ms);
        self.end_ms = self.end_ms.min(o.end_ms);
        if let Some(ids) = o.ids {
            intersect(&mut self.ids, ids);
        }
        if let Some(names) = o.names {
            intersect(&mut self.names, names);
        }
    }

    fn compare(&mut self, col: &str, op: Operator, v: &ScalarValue) {
        match col {
            COL_TIMESTAMP => {
                let Some((lo, hi)) = scalar_ms(v) else { return };
                match op {
                    Operator::Gt => self.start_ms = self.start_ms.max(lo.saturating_add(1)),
                    Operator::GtEq => self.start_ms = self.start_ms.max(lo),
                    Operator::Lt => self.end_ms = self.end_ms.min(hi.saturating_sub(1)),
                    Operator::LtEq => self.end_ms = self.end_ms.min(hi),
                    Operator::Eq => {
                        self.start_ms = self.start_ms.max(lo);
                        self.end_ms = self.end_ms.min(hi);
                    }
                    _ => {}
                }
            }
            COL_SERIES_ID if op == Operator::Eq => {
                if let Some(id) = scalar_u64(v) {
                    intersect(&mut self.ids, BTreeSet::from([id]));
                }
            }
            COL_METRIC_NAME if op == Operator::Eq => {
                if let Some(name) = scalar_str(v) {
                    intersect(&mut self.names, BTreeSet::from([name]));
                }
            }
            _ => {}
        }
    }

    /// Storage matchers for the metric names.
    fn matchers(&self) -> Vec<Matcher> {
        match &self.names {
            None => Vec::new(),
            Some(names) if names.len() == 1 => names
                .iter()
                .map(|n| Matcher::eq(METRIC_NAME, n.as_str()))
                .collect(),
            Some(names) => {
                let alternatives: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
                Matcher::new(MatchOp::Regex, METRIC_NAME, alternatives.join("|"))
                    .map(|m| vec![m])
                    .unwrap_or_default()
            }
        }
    }

    fn keeps(&self, id: SeriesId) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// The column an expression reads, through casts: the literal it is
/// compared with then has the cast's type, and the conversions below are
/// exact (or widen), so the bound still holds for the column itself.
fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(&c.name),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

/// A timestamp literal as the millisecond range `(lo, hi)` of the column
/// values it can stand for: exact for milliseconds and plain integers,
/// widened for other units.
fn scalar_ms(v: &ScalarValue) -> Option<(i64, i64)> {
    let exact = |x: i64| Some((x, x));
    let coarse = |x: i64, per_ms: i64| {
        let ms = x.div_euclid(per_ms);
        Some((ms, ms + 1))
    };
    match v {
        ScalarValue::TimestampMillisecond(Some(x), _) | ScalarValue::Int64(Some(x)) => exact(*x),
        // Seconds: a column cast to seconds was truncated, so a second
        // stands for its whole thousand milliseconds.
        ScalarValue::TimestampSecond(Some(x), _) => {
            let ms = x.checked_mul(1000)?;
            Some((ms, ms.checked_add(999)?))
        }
        ScalarValue::TimestampMicrosecond(Some(x), _) => coarse(*x, 1000),
        ScalarValue::TimestampNanosecond(Some(x), _) => coarse(*x, 1_000_000),
        _ => None,
    }
}

fn scalar_u64(v: &ScalarValue) -> Option<u64> {
    match v {
        ScalarValue::UInt64(Some(x)) => Some(*x),
        ScalarValue::Int64(Some(x)) => u64::try_from(*x).ok(),
        ScalarValue::Decimal128(Some(x), _, 0) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn scalar_str(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn storage_error(e: storage::StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Which table a [`TenantTable`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Series,
    Samples,
}

/// `series` or `samples` of one tenant.
pub struct TenantTable {
    kind: Kind,
    storage: Storage,
    tenant: TenantId,
    schema: SchemaRef,
    /// Samples this query may still read (shared by every scan of it).
    budget: Arc<SampleBudget>,
}

impl fmt::Debug for TenantTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} of tenant {}", self.kind, self.tenant)
    }
}

/// The samples a query may read, across all its scans.
#[derive(Debug)]
pub struct SampleBudget {
    limit: usize,
    used: AtomicUsize,
}

impl SampleBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    fn take(&self, n: usize) -> Result<()> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query reads more than query.max_samples ({}) samples; narrow it by timestamp, series_id or metric_name",
                self.limit
            )));
        }
        Ok(())
    }
}

impl TenantTable {
    pub fn new(kind: Kind, storage: Storage, tenant: TenantId, budget: Arc<SampleBudget>) -> Self {
        let schema = match kind {
            Kind::Series => series_schema(),
            Kind::Samples => samples_schema(),
        };
        Self {
            kind,
            storage,
            tenant,
            schema,
            budget,
        }
    }
}

#[async_trait]
impl TableProvider for TenantTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let part = Arc::new(Scan {
            kind: self.kind,
            storage: self.storage.clone(),
            tenant: self.tenant.clone(),
            schema: self.schema.clone(),
            pushdown: Pushdown::from_filters(filters),
            budget: self.budget.clone(),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            vec![part],
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// One scan: the table, its tenant and what the filters pushed down.
struct Scan {
    kind: Kind,
    storage: Storage,
    tenant: TenantId,
    schema: SchemaRef,
    pushdown: Pushdown,
    budget: Arc<SampleBudget>,
}

impl fmt::Debug for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} of tenant {}: {:?}",
            self.kind, self.tenant, self.pushdown
        )
    }
}

impl PartitionStream for Scan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let stream = match self.kind {
            Kind::Series => series_stream(
                self.storage.clone(),
                self.tenant.clone(),
                self.pushdown.clone(),
                schema.clone(),
            )
            .boxed(),
            Kind::Samples => samples_stream(
                self.storage.clone(),
                self.tenant.clone(),
                self.pushdown.clone(),
                schema.clone(),
                self.budget.clone(),
            )
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// Splits a batch into pieces of at most [`BATCH_ROWS`] rows (zero-copy).
fn pieces(batch: RecordBatch) -> Vec<Result<RecordBatch>> {
    let n = batch.num_rows();
    (0..n)
        .step_by(BATCH_ROWS)
        .map(|at| Ok(batch.slice(at, BATCH_ROWS.min(n - at))))
        .collect()
}

fn series_stream(
    storage: Storage,
    tenant: TenantId,
    push: Pushdown,
    schema: SchemaRef,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::once(async move {
        if push.is_empty() {
            return Ok(Vec::new());
        }
        let matchers = push.matchers();
        let sets = if matchers.is_empty() {
            Vec::new()
        } else {
            vec![matchers]
        };
        let found = storage
            .series(&tenant, &sets, i64::MIN / 2, i64::MAX / 2)
            .await
            .map_err(storage_error)?;
        let rows: Vec<(SeriesId, &Labels)> = found
            .iter()
            .map(|l| (l.series_id(), l))
            .filter(|(id, _)| push.keeps(*id))
            .collect();
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for (_, l) in &rows {
            for label in l.iter() {
                labels.keys().append_value(&label.name);
                labels.values().append_value(&label.value);
            }
            labels.append(true)?;
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(id, _)| *id),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .map(|(_, l)| l.metric_name().unwrap_or_default()),
            )),
            Arc::new(labels.finish()),
        ];
        Ok(pieces(RecordBatch::try_new(schema, columns)?))
    })
    .flat_map(|r: Result<Vec<Result<RecordBatch>>>| match r {
        Ok(batches) => futures::stream::iter(batches),
        Err(e) => futures::stream::iter(vec![Err(e)]),
    })
}

/// Matching series ids, sorted, with an estimate of their samples in range.
fn plan_slices(
    sources: &[storage::storage::Source],
    matchers: &[Matcher],
    push: &Pushdown,
) -> Vec<(SeriesId, SeriesId)> {
    let mut ids: HashSet<SeriesId> = HashSet::new();
    let mut estimate = 0f64;
    for src in sources {
        let idx = &src.index;
        let mut matched = 0usize;
        for s in &idx.series {
            if push.keeps(s.id) && storage::matcher::matches_all(matchers, &s.labels) {
                ids.insert(s.id);
                matched += 1;
            }
        }
        if matched > 0 && !idx.series.is_empty() {
            let span = (idx.max_time - idx.min_time).max(1) as f64;
            let inside =
                (idx.max_time.min(push.end_ms) - idx.min_time.max(push.start_ms)).max(1) as f64;
            let share = matched as f64 / idx.series.len() as f64;
            estimate += idx.samples as f64 * share * (inside / span).min(1.0);
        }
    }
    let mut ids: Vec<SeriesId> = ids.into_iter().collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Vec::new();
    }
    let per_series = (estimate / ids.len() as f64).max(1.0);
    let per_slice =
        ((SAMPLES_PER_SLICE as f64 / per_series) as usize).clamp(1, MAX_SERIES_PER_SLICE);
    ids.chunks(per_slice)
        .filter_map(|c| Some((*c.first()?, *c.last()?)))
        .collect()
}

/// A running `samples` scan: its sources and the slices of series ids left.
struct SamplesScan {
    storage: Storage,
    push: Pushdown,
    schema: SchemaRef,
    budget: Arc<SampleBudget>,
    matchers: Vec<Matcher>,
    sources: Vec<storage::storage::Source>,
    slices: std::vec::IntoIter<(SeriesId, SeriesId)>,
}

impl SamplesScan {
    async fn start(
        storage: Storage,
        tenant: TenantId,
        push: Pushdown,
        schema: SchemaRef,
        budget: Arc<SampleBudget>,
    ) -> Result<Option<Self>> {
        if push.is_empty() {
            return Ok(None);
        }
        let matchers = push.matchers();
        let sources = storage
            .sources(&tenant, push.start_ms, push.end_ms)
            .await
            .map_err(storage_error)?;
        let slices = plan_slices(&sources, &matchers, &push).into_iter();
        Ok(Some(Self {
            storage,
            push,
            schema,
            budget,
            matchers,
            sources,
            slices,
        }))
    }

    /// The samples of matching series with ids in `[lo, hi]`.
    async fn read_slice(&self, lo: SeriesId, hi: SeriesId) -> Result<RecordBatch> {
        let found = self
            .storage
            .read(
                &self.sources,
                &self.matchers,
                self.push.start_ms,
                self.push.end_ms,
                Some((lo, hi)),
            )
            .await
            .map_err(storage_error)?;
        let mut ids = Vec::new();
        let mut names = StringBuilder::new();
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        for s in &found {
            let id = s.labels.series_id();
            if !self.push.keeps(id) {
                continue;
            }
            self.budget.take(s.samples.len())?;
            let name = s.labels.metric_name().unwrap_or_default();
            for p in &s.samples {
                ids.push(id);
                names.append_value(name);
                ts.push(p.t);
                vs.push(p.v);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(names.finish()),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(vs)),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn samples_stream(
    storage: Storage,
    tenant: TenantId,
    push: Pushdown,
    schema: SchemaRef,
    budget: Arc<SampleBudget>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::once(SamplesScan::start(storage, tenant, push, schema, budget)).flat_map(
        |started| {
            let scan = match started {
                Ok(Some(scan)) => scan,
                Ok(None) => return futures::stream::empty().boxed(),
                Err(e) => return futures::stream::iter(vec![Err(e)]).boxed(),
            };
            futures::stream::unfold(Some(scan), |scan| async move {
                let mut scan = scan?;
                let (lo, hi) = scan.slices.next()?;
                match scan.read_slice(lo, hi).await {
                    Ok(batch) => Some((Ok(batch), Some(scan))),
                    // Nothing more after an error.
                    Err(e) => Some((Err(e), None)),
                }
            })
            .flat_map(|r: Result<RecordBatch>| match r {
                Ok(b) => futures::stream::iter(pieces(b)),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .boxed()
        },
    )
}

#[cfg(test)]
mod tests;
