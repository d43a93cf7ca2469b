//! A DataFusion [`TableProvider`] over a chosen set of segment (or block)
//! objects of one file schema.
//!
//! The caller (the storage facade) has already pruned segments by time range
//! and series index; this table adds a `segment` column (the position of the
//! file in that list) so rows can be mapped back to the file's own series
//! index, and pushes `series_id`/`timestamp` filters into the Parquet scan so
//! row groups and pages are skipped by their statistics.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::segment::sample_schema;

/// Name of the column that holds a row's file position in [`SegmentTable`].
pub const COL_SEGMENT: &str = "segment";

/// One file of a [`SegmentTable`].
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub key: String,
    pub size: u64,
}

#[derive(Debug)]
pub struct SegmentTable {
    url: ObjectStoreUrl,
    files: Vec<SegmentFile>,
    file_schema: SchemaRef,
    schema: SchemaRef,
}

impl SegmentTable {
    /// A table over segments (sample rows).
    pub fn new(url: ObjectStoreUrl, files: Vec<SegmentFile>) -> Self {
        Self::with_file_schema(url, sample_schema(), files)
    }

    /// A table over Parquet objects with `file_schema` (e.g. blocks' chunk rows).
    pub fn with_file_schema(
        url: ObjectStoreUrl,
        file_schema: SchemaRef,
        files: Vec<SegmentFile>,
    ) -> Self {
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(COL_SEGMENT, DataType::UInt32, false));
        Self {
            url,
            files,
            file_schema,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for SegmentTable {
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
        // Statistics pruning is inexact: DataFusion re-applies the filters.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partition_col = Arc::new(Field::new(COL_SEGMENT, DataType::UInt32, false));
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(vec![partition_col])
            .build();
        let mut source = ParquetSource::new(table_schema);
        // Only filters on file columns go to the Parquet reader.
        let file_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| f.column_refs().iter().all(|c| c.name != COL_SEGMENT))
            .cloned()
            .collect();
        if let Some(expr) = conjunction(file_filters) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(expr, &df_schema)?);
        }
        let mut builder = FileScanConfigBuilder::new(self.url.clone(), Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit);
        // Segments are small, so DataFusion would not split them by size:
        // deal them round-robin into one group per target partition so a
        // scan over many segments uses every core.
        let partitions = state
            .config()
            .target_partitions()
            .clamp(1, self.files.len().max(1));
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
        for (i, f) in self.files.iter().enumerate() {
            let pos = u32::try_from(i).unwrap_or(u32::MAX);
            // Strata knows its file schema: handing it over keeps the reader
            // from decoding the file's embedded `ARROW:schema`, whose decoder
            // panics on corrupt bytes (fuzz finding, arrow-ipc 59).
            let file = PartitionedFile::new(f.key.clone(), f.size)
                .with_partition_values(vec![ScalarValue::UInt32(Some(pos))])
                .with_arrow_schema(self.file_schema.clone());
            groups[i % partitions].push(file);
        }
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            builder = builder.with_file_group(FileGroup::new(group));
        }
        Ok(DataSourceExec::from_data_source(builder.build()))
    }
}
