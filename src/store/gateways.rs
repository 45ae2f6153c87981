//! Gateway instances that hold queries (`te_gateways`): each instance's tag in held query ids and
//! the URL of its proxy listener, so that another instance can forward a held query's poll there.

use super::{required_text, Result, Store};

impl Store {
    /// Record this instance (its tag and proxy URL) as alive at `now_ms`, and forget instances
    /// not seen since `stale_before_ms`.
    pub async fn announce_gateway(
        &self,
        tag: &str,
        url: &str,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            &self
                .dialect
                .sql("DELETE FROM te_gateways WHERE tag = ? OR seen_ms < ?"),
        )
        .bind(tag)
        .bind(stale_before_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            &self
                .dialect
                .sql("INSERT INTO te_gateways (tag, url, seen_ms) VALUES (?, ?, ?)"),
        )
        .bind(tag)
        .bind(url)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Instances seen at or after `since_ms`: (tag, proxy URL).
    pub async fn gateways(&self, since_ms: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            &self
                .dialect
                .sql("SELECT tag, url FROM te_gateways WHERE seen_ms >= ?"),
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((required_text(r, 0, "tag")?, required_text(r, 1, "url")?)))
            .collect()
    }
}
