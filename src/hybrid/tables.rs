//! The local Parquet tables of `hybrid.tables`: the only files a hybrid query can read.
//!
//! Each table is a DataFusion listing table over one file, a directory or a glob. Schemas are
//! read once (at start and whenever the table list changes), so a request only pays for the
//! files it scans.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

/// The loaded tables of one `hybrid.tables` setting. A table that failed to load keeps its error,
/// which a query naming it gets to see.
pub struct LocalTables {
    pub spec: BTreeMap<String, String>,
    pub tables: BTreeMap<String, Result<Arc<dyn TableProvider>, String>>,
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

async fn open(ctx: &SessionContext, location: &str) -> Result<Arc<dyn TableProvider>, String> {
    check_location(location)?;
    let url = ListingTableUrl::parse(location).map_err(|e| e.to_string())?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let schema = options
        .infer_schema(&ctx.state(), &url)
        .await
        .map_err(|e| format!("cannot read the Parquet schema of `{location}`: {e}"))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| e.to_string())?;
    Ok(Arc::new(table))
}

/// A location must be a local path (no URL: nothing remote, nothing through object-store
/// credentials) whose directory part exists. Checked when the config is loaded, so a typo stops
/// `serve` and `check-config` instead of failing the first query.
pub fn check_location(location: &str) -> Result<(), String> {
    if location.trim().is_empty() {
        return Err("empty path".into());
    }
    if location.contains("://") {
        return Err(format!(
            "`{location}` is a URL; hybrid tables are local Parquet files, directories or globs"
        ));
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
        Err(format!("`{fixed}` does not exist"))
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
        assert!(check_location(&format!("{d}/missing/*.parquet")).is_err());
        assert!(check_location("s3://bucket/x.parquet").is_err());
        assert!(check_location("file:///etc/passwd").is_err());
        assert!(check_location("").is_err());
    }
}
