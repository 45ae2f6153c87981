//! A minimal Trino client-protocol client: submit a statement and follow `nextUri` to the end.
//! Used by the health checker's SQL and load probes.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Clone)]
pub struct StatementOutcome {
    pub id: Option<String>,
    pub rows: Vec<Vec<Value>>,
    /// `errorName: message` of a failed query.
    pub error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    id: Option<String>,
    next_uri: Option<String>,
    data: Option<Vec<Vec<Value>>>,
    error: Option<PageError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageError {
    message: Option<String>,
    error_name: Option<String>,
}

/// Why a statement could not be run through the protocol (a query that failed on Trino is not
/// one of these: see [`StatementOutcome::error`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("submit failed: {0}")]
    Submit(#[source] reqwest::Error),
    #[error("page request failed: {0}")]
    Page(#[source] reqwest::Error),
    /// A non-2xx answer, with the start of its body.
    #[error("HTTP {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("not a Trino response: {0}")]
    NotTrino(#[source] reqwest::Error),
    #[error("no result after {0} pages")]
    TooManyPages(usize),
}

/// Replace scheme and authority of `uri` with `base`: a coordinator may advertise a name this
/// process cannot resolve (or a gateway), but the path is what identifies the page.
pub(crate) fn rebase(base: &str, uri: &str) -> String {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    format!("{base}{path}")
}

/// `X-Trino-Client-Capabilities`, as the gateway's own queries (health probes, hybrid subqueries)
/// send it: without `PARAMETRIC_DATETIME`, Trino rounds timestamps to milliseconds and reports
/// them without their precision.
pub const CLIENT_CAPABILITIES: &str = "X-Trino-Client-Capabilities";
pub const CAPABILITIES: &str = "PARAMETRIC_DATETIME";

/// Run `sql` on the coordinator at `base` (e.g. `http://host:8080`), reading at most `max_pages`.
/// `Err` means the protocol itself failed (HTTP error, bad JSON); a failed query is `Ok` with
/// `error` set.
pub async fn execute(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    source: &str,
    sql: &str,
    max_pages: usize,
) -> Result<StatementOutcome, ClientError> {
    let resp = http
        .post(format!("{base}/v1/statement"))
        .header("X-Trino-User", user)
        .header("X-Trino-Source", source)
        .header(CLIENT_CAPABILITIES, CAPABILITIES)
        .body(sql.to_string())
        .send()
        .await
        .map_err(ClientError::Submit)?;
    let mut page = read_page(resp).await?;
    let mut out = StatementOutcome {
        id: page.id.clone(),
        ..StatementOutcome::default()
    };
    for _ in 0..max_pages {
        if let Some(rows) = page.data.take() {
            out.rows.extend(rows);
        }
        if let Some(e) = page.error.take() {
            out.error = Some(format!(
                "{}: {}",
                e.error_name.unwrap_or_default(),
                e.message.unwrap_or_default()
            ));
        }
        let Some(next) = page.next_uri.take() else {
            return Ok(out);
        };
        let resp = http
            .get(rebase(base, &next))
            .header("X-Trino-User", user)
            .send()
            .await
            .map_err(ClientError::Page)?;
        page = read_page(resp).await?;
    }
    Err(ClientError::TooManyPages(max_pages))
}

async fn read_page(resp: reqwest::Response) -> Result<Page, ClientError> {
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        return Err(ClientError::Status { status, body });
    }
    resp.json::<Page>().await.map_err(ClientError::NotTrino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebases_next_uris() {
        assert_eq!(
            rebase(
                "http://10.0.0.1:8080",
                "http://trino.internal:8080/v1/statement/executing/q/y/1"
            ),
            "http://10.0.0.1:8080/v1/statement/executing/q/y/1"
        );
    }
}
