//! The local Parquet tables of `hybrid.tables`: the only files a hybrid query can read.
//!
//! Each table is a DataFusion listing table over one file, a directory or a glob. Schemas are
//! read once (at start and whenever the table list changes), so a request only pays for the
//! files it scans.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

/// Why a local table is not available.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("empty path")]
    EmptyPath,
    #[error("`{0}` is a URL; hybrid tables are local Parquet files, directories or globs")]
    Url(String),
    /// The fixed part of the location (before any glob character) does not exist.
    #[error("`{0}` does not exist")]
    Missing(String),
    #[error("{0}")]
    Location(#[source] DataFusionError),
    #[error("cannot read the Parquet schema of `{location}`: {source}")]
    Schema {
        location: String,
        source: DataFusionError,
    },
    #[error("{0}")]
    Listing(#[source] DataFusionError),
    /// The load itself did not complete (the engine's runtime failed).
    #[error("loading failed: {0}")]
    LoadFailed(String),
}

/// For callers that collect problems as text (`config::validate`).
impl From<TableError> for String {
    fn from(e: TableError) -> String {
        e.to_string()
    }
}

/// The loaded tables of one `hybrid.tables` setting. A table that failed to load keeps its error,
/// which a query naming it gets to see.
pub struct LocalTables {
    pub spec: BTreeMap<String, String>,
    pub tables: BTreeMap<String, Result<Arc<dyn TableProvider>, TableError>>,
}

impl LocalTables {
    pub async fn load(spec: &BTreeMap<String, String>) -> LocalTables {
        let ctx = SessionContext::new();
        let mut tables = BTreeMap::new();
        for (name, location) in spec {
            let table = open(&ctx, location).await;
            if let Err(e) = &table {
                tracing::error!(table = %name, %location, error = %e, "hybrid table failed to load");
            } else {
                tracing::info!(table = %name, %location, "hybrid table loaded");
            }
            tables.insert(name.clone(), table);
        }
        LocalTables {
            spec: spec.clone(),
            tables,
        }
    }
}

async fn open(ctx: &SessionContext, location: &str) -> Result<Arc<dyn TableProvider>, TableError> {
    check_location(location)?;
    let url = ListingTableUrl::parse(location).map_err(TableError::Location)?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let schema = options
        .infer_schema(&ctx.state(), &url)
        .await
        .map_err(|source| TableError::Schema {
            location: location.to_string(),
            source,
        })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(TableError::Listing)?;
    Ok(Arc::new(table))
}

/// A location must be a local path (no URL: nothing remote, nothing through object-store
/// credentials) whose directory part exists. Checked when the config is loaded, so a typo stops
/// `serve` and `check-config` instead of failing the first query.
pub fn check_location(location: &str) -> Result<(), TableError> {
    if location.trim().is_empty() {
        return Err(TableError::EmptyPath);
    }
    if location.contains("://") {
        return Err(TableError::Url(location.to_string()));
    }
    // The part before the first glob character must exist.
    let fixed: String = match location.find(['*', '?', '[']) {
        Some(i) => {
            let head = &location[..i];
            match head.rfind('/') {
                Some(j) => head[..=j].to_string(),
                None => ".".to_string(),
            }
        }
        None => location.to_string(),
    };
    if Path::new(&fixed).exists() {
        Ok(())
    } else {
        Err(TableError::Missing(fixed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_local_and_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        assert!(check_location(&d).is_ok());
        assert!(check_location(&format!("{d}/*.parquet")).is_ok());
        assert!(matches!(
            check_location(&format!("{d}/missing/*.parquet")),
            Err(TableError::Missing(m)) if m == format!("{d}/missing/")
        ));
        assert!(matches!(
            check_location("s3://bucket/x.parquet"),
            Err(TableError::Url(_))
        ));
        assert!(check_location("file:///etc/passwd").is_err());
        assert!(matches!(check_location(""), Err(TableError::EmptyPath)));
    }
}
