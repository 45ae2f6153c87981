//! OAuth2 logins in progress (`te_login_pins`): the backend that issued each login's challenge,
//! so that any gateway instance sends the login's legs there (see [`crate::oauth2`]).

use super::{is_unique_violation, required_text, Result, Store, StoreError, MAX_NAME_LEN};

/// `auth_id_hash` holds 64 hex digits.
const HASH_LEN: usize = 64;

impl Store {
    /// Records that `backend` issued the login `auth_id_hash`, and deletes pins created before
    /// `expired_before_ms` (logins are rare, so this keeps the table small at no extra cost).
    /// Pinning the same login again moves it.
    pub async fn save_login_pin(
        &self,
        auth_id_hash: &str,
        backend: &str,
        created_ms: i64,
        expired_before_ms: i64,
    ) -> Result<()> {
        if auth_id_hash.len() != HASH_LEN || !auth_id_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid(format!(
                "login hash must be {HASH_LEN} hex digits"
            )));
        }
        if backend.chars().count() > MAX_NAME_LEN {
            return Err(StoreError::Invalid(format!(
                "backend name `{backend}` is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(
            &self
                .dialect
                .sql("DELETE FROM te_login_pins WHERE created_ms < ? OR auth_id_hash = ?"),
        )
        .bind(expired_before_ms)
        .bind(auth_id_hash)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(&self.dialect.sql(
            "INSERT INTO te_login_pins (auth_id_hash, backend_name, created_ms) VALUES (?, ?, ?)",
        ))
        .bind(auth_id_hash)
        .bind(backend)
        .bind(created_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Another instance pinned the same login at this moment (the same challenge seen
            // twice): its row stands.
            Err(e) if is_unique_violation(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    /// The backend that issued the login `auth_id_hash`, if it was pinned at or after
    /// `created_since_ms`.
    pub async fn login_pin(
        &self,
        auth_id_hash: &str,
        created_since_ms: i64,
    ) -> Result<Option<String>> {
        let row = sqlx::query(&self.dialect.sql(
            "SELECT backend_name FROM te_login_pins WHERE auth_id_hash = ? AND created_ms >= ?",
        ))
        .bind(auth_id_hash)
        .bind(created_since_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| required_text(&row, 0, "backend_name"))
            .transpose()
    }
}
