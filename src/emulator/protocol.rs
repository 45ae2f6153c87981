//! JSON shapes of the Trino client protocol (v1), as a Trino 446 coordinator writes them.
//!
//! Everything here borrows from the query being answered so that a page is serialised straight
//! into its response body with `serde_json::to_vec`, without an intermediate `serde_json::Value`
//! tree: the emulator sits on the benchmark path and must cost as little as possible per page.

use http::HeaderName;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

/// Trino's `StandardErrorCode`s that the emulator can raise (code, name and type as in
/// `io.trino.spi.StandardErrorCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    GenericUserError,
    SyntaxError,
    UserCanceled,
    NotSupported,
    UnknownTransaction,
    NotInTransaction,
    ColumnNotFound,
    MissingCatalogName,
    TableNotFound,
    SerializationError,
}

impl ErrorCode {
    pub(crate) fn code(self) -> i32 {
        match self {
            Self::GenericUserError => 0,
            Self::SyntaxError => 1,
            Self::UserCanceled => 3,
            Self::NotSupported => 13,
            Self::UnknownTransaction => 20,
            Self::NotInTransaction => 21,
            Self::ColumnNotFound => 47,
            Self::MissingCatalogName => 56,
            Self::TableNotFound => 46,
            Self::SerializationError => 65_562,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::GenericUserError => "GENERIC_USER_ERROR",
            Self::SyntaxError => "SYNTAX_ERROR",
            Self::UserCanceled => "USER_CANCELED",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::UnknownTransaction => "UNKNOWN_TRANSACTION",
            Self::NotInTransaction => "NOT_IN_TRANSACTION",
            Self::ColumnNotFound => "COLUMN_NOT_FOUND",
            Self::MissingCatalogName => "MISSING_CATALOG_NAME",
            Self::TableNotFound => "TABLE_NOT_FOUND",
            Self::SerializationError => "SERIALIZATION_ERROR",
        }
    }

    /// The error type of the code, as in Trino.
    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Self::SerializationError => "INTERNAL_ERROR",
            _ => "USER_ERROR",
        }
    }

    /// The Java exception class Trino reports in `failureInfo.type`.
    fn exception_type(self) -> &'static str {
        match self {
            Self::SyntaxError => "io.trino.sql.parser.ParsingException",
            _ => "io.trino.spi.TrinoException",
        }
    }
}

/// `errorLocation` of a failure: 1-based line and column in the SQL text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorLocation {
    pub line_number: u32,
    pub column_number: u32,
}

/// The `error` object of a FAILED `QueryResults`.
#[derive(Clone, Debug)]
pub(crate) struct QueryError {
    pub code: ErrorCode,
    pub message: String,
    pub location: Option<ErrorLocation>,
}

impl QueryError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn at(mut self, location: Option<ErrorLocation>) -> Self {
        self.location = location;
        self
    }

    pub(crate) fn canceled() -> Self {
        Self::new(ErrorCode::UserCanceled, "Query was canceled")
    }
}

impl Serialize for QueryError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("QueryError", 6)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("errorCode", &self.code.code())?;
        st.serialize_field("errorName", self.code.name())?;
        st.serialize_field("errorType", self.code.error_type())?;
        if let Some(location) = &self.location {
            st.serialize_field("errorLocation", location)?;
        }
        st.serialize_field("failureInfo", &FailureInfo(self))?;
        st.end()
    }
}

/// `failureInfo`: Trino's serialised exception. Clients print `type` and `message`; the stack
/// stays empty because there is no Java stack to show.
struct FailureInfo<'a>(&'a QueryError);

impl Serialize for FailureInfo<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut st = s.serialize_struct("FailureInfo", 5)?;
        st.serialize_field("type", e.code.exception_type())?;
        st.serialize_field("message", &e.message)?;
        st.serialize_field("suppressed", &[] as &[()])?;
        st.serialize_field("stack", &[] as &[()])?;
        if let Some(location) = &e.location {
            st.serialize_field("errorLocation", location)?;
        }
        st.end()
    }
}

/// The SQL types the emulator produces, with Trino's display names and type signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlType {
    Integer,
    Bigint,
    Double,
    Boolean,
    /// The type of a bare `NULL` literal.
    Unknown,
    /// `varchar(n)`; `None` is the unbounded `varchar`.
    Varchar(Option<u32>),
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// A type of a canned table (`emulator::tables`), given as Trino writes it.
    Canned(&'static CannedType),
}

/// Display name and `typeSignature` JSON of a canned column, exactly as Trino sends them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CannedType {
    pub display: &'static str,
    pub signature: &'static str,
}

/// Length Trino reports in the type signature of an unbounded `varchar`.
const VARCHAR_UNBOUNDED: u32 = i32::MAX as u32;

impl SqlType {
    fn raw(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Bigint => "bigint",
            Self::Double => "double",
            Self::Boolean => "boolean",
            Self::Unknown => "unknown",
            Self::Varchar(_) => "varchar",
            Self::Decimal { .. } => "decimal",
            Self::Canned(c) => c.display,
        }
    }

    pub(crate) fn display(self) -> String {
        match self {
            Self::Varchar(Some(n)) => format!("varchar({n})"),
            Self::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Self::Canned(c) => c.display.to_string(),
            other => other.raw().to_string(),
        }
    }

    fn arguments(self) -> ([u32; 2], usize) {
        match self {
            Self::Varchar(n) => ([n.unwrap_or(VARCHAR_UNBOUNDED), 0], 1),
            Self::Decimal { precision, scale } => ([precision, scale], 2),
            _ => ([0, 0], 0),
        }
    }
}

/// A result column. Trino 446 writes `typeSignature` as `{rawType, arguments}` only (the
/// `typeArguments`/`literalArguments` of older servers are gone).
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub name: String,
    pub ty: SqlType,
    /// Cached display name (`varchar(3)`), computed once per query rather than per page.
    display: String,
}

impl Column {
    pub(crate) fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Self {
            name: name.into(),
            ty,
            display: ty.display(),
        }
    }
}

impl Serialize for Column {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Column", 3)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("type", &self.display)?;
        st.serialize_field("typeSignature", &TypeSignature(self.ty))?;
        st.end()
    }
}

struct TypeSignature(SqlType);

impl Serialize for TypeSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let SqlType::Canned(c) = self.0 {
            let v: serde_json::Value =
                serde_json::from_str(c.signature).map_err(serde::ser::Error::custom)?;
            return v.serialize(s);
        }
        let mut st = s.serialize_struct("ClientTypeSignature", 2)?;
        st.serialize_field("rawType", self.0.raw())?;
        let (values, len) = self.0.arguments();
        st.serialize_field("arguments", &LongArguments(&values[..len]))?;
        st.end()
    }
}

struct LongArguments<'a>(&'a [u32]);

impl Serialize for LongArguments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&LongArgument(*value))?;
        }
        seq.end()
    }
}

struct LongArgument(u32);

impl Serialize for LongArgument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ClientTypeSignatureParameter", 2)?;
        st.serialize_field("kind", "LONG")?;
        st.serialize_field("value", &self.0)?;
        st.end()
    }
}

/// `stats` of a `QueryResults` (Trino's `StatementStats`). `rootStage` is left out: it is
/// nullable and no client needs it to run a query.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatementStats {
    pub state: &'static str,
    pub queued: bool,
    pub scheduled: bool,
    pub nodes: u32,
    pub total_splits: u64,
    pub queued_splits: u64,
    pub running_splits: u64,
    pub completed_splits: u64,
    pub cpu_time_millis: u64,
    pub wall_time_millis: u64,
    pub queued_time_millis: u64,
    pub elapsed_time_millis: u64,
    pub processed_rows: u64,
    pub processed_bytes: u64,
    pub physical_input_bytes: u64,
    pub peak_memory_bytes: u64,
    pub spilled_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_percentage: Option<f64>,
}

/// The rows of one page (a query's rows are computed as the client pages, so a page is all
/// that exists of a huge result at any time).
pub(crate) enum PageData<'a> {
    Rows(&'a [Vec<serde_json::Value>]),
}

impl<'a> PageData<'a> {
    /// Rows in the page.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Rows(rows) => u64::try_from(rows.len()).unwrap_or(u64::MAX),
        }
    }

    /// Rows `offset..offset + len` of the page (clamped to it).
    pub(crate) fn slice(&self, offset: u64, len: u64) -> PageData<'a> {
        let offset = offset.min(self.len());
        let len = len.min(self.len() - offset);
        match self {
            Self::Rows(rows) => {
                let from = usize::try_from(offset).unwrap_or(usize::MAX);
                let to = usize::try_from(offset + len).unwrap_or(usize::MAX);
                Self::Rows(rows.get(from..to).unwrap_or_default())
            }
        }
    }
}

impl Serialize for PageData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Rows(rows) => rows.serialize(s),
        }
    }
}

/// The `data` of a `QueryResults`: the rows themselves (the direct protocol), or the segments
/// of the spooling protocol.
pub(crate) enum QueryData<'a> {
    Direct(PageData<'a>),
    Encoded(EncodedData),
}

impl Serialize for QueryData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Direct(rows) => rows.serialize(s),
            Self::Encoded(data) => data.serialize(s),
        }
    }
}

/// Trino's `EncodedQueryData`: `{"encoding": "json+zstd", "segments": [...]}` (its `metadata`
/// is empty for the JSON encodings and left out, as Trino does).
#[derive(Debug, Serialize)]
pub(crate) struct EncodedData {
    pub encoding: &'static str,
    pub segments: Vec<Segment>,
}

/// One segment of a spooled result.
#[derive(Debug)]
pub(crate) enum Segment {
    /// The encoded bytes travel in the page, base64-encoded.
    Inline {
        data: String,
        metadata: SegmentMetadata,
    },
    /// The client downloads the bytes from `uri`, sending `headers`, and acknowledges them on
    /// `ack_uri`.
    Spooled {
        uri: String,
        ack_uri: String,
        metadata: SegmentMetadata,
        headers: [(&'static str, String); 1],
    },
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Inline { data, metadata } => {
                let mut st = s.serialize_struct("InlineSegment", 3)?;
                st.serialize_field("type", "inline")?;
                st.serialize_field("data", data)?;
                st.serialize_field("metadata", metadata)?;
                st.end()
            }
            Self::Spooled {
                uri,
                ack_uri,
                metadata,
                headers,
            } => {
                let mut st = s.serialize_struct("SpooledSegment", 5)?;
                st.serialize_field("type", "spooled")?;
                st.serialize_field("uri", uri)?;
                st.serialize_field("ackUri", ack_uri)?;
                st.serialize_field("metadata", metadata)?;
                st.serialize_field("headers", &SegmentHeaders(headers))?;
                st.end()
            }
        }
    }
}

/// `headers` of a spooled segment: `{"Name": ["value"]}`, as Trino's `Map<String, List<String>>`.
struct SegmentHeaders<'a>(&'a [(&'static str, String)]);

impl Serialize for SegmentHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &[value])?;
        }
        map.end()
    }
}

/// A segment's `metadata` (Trino's `DataAttributes`); numbers, as the Python client compares
/// `segmentSize` with the downloaded length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentMetadata {
    /// Rows before this segment in the whole result.
    pub row_offset: u64,
    pub rows_count: u64,
    /// Length of the encoded (possibly compressed) bytes.
    pub segment_size: u64,
    /// Length after decompression; only on compressed segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
}

/// One `QueryResults` document.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryResults<'a> {
    pub id: &'a str,
    pub info_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_cancel_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<&'a [Column]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<QueryData<'a>>,
    pub stats: StatementStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a QueryError>,
    pub warnings: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_count: Option<u64>,
}

/// Which header prefix a client speaks. Trino answers in the prefix the client used
/// (`protocol.v1.alternate-header-name=Presto`), so legacy Presto clients see `X-Presto-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Trino,
    Presto,
}

/// Response header names of one protocol prefix.
pub(crate) struct ResponseHeaders {
    pub set_catalog: HeaderName,
    pub set_schema: HeaderName,
    pub set_session: HeaderName,
    pub clear_session: HeaderName,
    pub started_transaction_id: HeaderName,
    pub clear_transaction_id: HeaderName,
}

static TRINO_HEADERS: ResponseHeaders = ResponseHeaders {
    set_catalog: HeaderName::from_static("x-trino-set-catalog"),
    set_schema: HeaderName::from_static("x-trino-set-schema"),
    set_session: HeaderName::from_static("x-trino-set-session"),
    clear_session: HeaderName::from_static("x-trino-clear-session"),
    started_transaction_id: HeaderName::from_static("x-trino-started-transaction-id"),
    clear_transaction_id: HeaderName::from_static("x-trino-clear-transaction-id"),
};

static PRESTO_HEADERS: ResponseHeaders = ResponseHeaders {
    set_catalog: HeaderName::from_static("x-presto-set-catalog"),
    set_schema: HeaderName::from_static("x-presto-set-schema"),
    set_session: HeaderName::from_static("x-presto-set-session"),
    clear_session: HeaderName::from_static("x-presto-clear-session"),
    started_transaction_id: HeaderName::from_static("x-presto-started-transaction-id"),
    clear_transaction_id: HeaderName::from_static("x-presto-clear-transaction-id"),
};

impl Protocol {
    pub(crate) fn headers(self) -> &'static ResponseHeaders {
        match self {
            Self::Trino => &TRINO_HEADERS,
            Self::Presto => &PRESTO_HEADERS,
        }
    }
}

/// URL-encodes like Java's `URLEncoder.encode(value, UTF_8)`, which Trino applies to session
/// property values in `X-Trino-Set-Session` (space becomes `+`).
pub(crate) fn java_url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_json_matches_trino_446() {
        let col = Column::new("a", SqlType::Varchar(Some(3)));
        let json = serde_json::to_value(&col).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"name":"a","type":"varchar(3)","typeSignature":{"rawType":"varchar","arguments":[{"kind":"LONG","value":3}]}})
        );
        let dec = serde_json::to_value(Column::new(
            "d",
            SqlType::Decimal {
                precision: 15,
                scale: 5,
            },
        ))
        .expect("serialize");
        assert_eq!(dec["type"], "decimal(15,5)");
        assert_eq!(
            dec["typeSignature"]["arguments"],
            serde_json::json!([{"kind":"LONG","value":15},{"kind":"LONG","value":5}])
        );
        let unbounded = serde_json::to_value(Column::new("v", SqlType::Varchar(None))).expect("ok");
        assert_eq!(unbounded["type"], "varchar");
        assert_eq!(
            unbounded["typeSignature"]["arguments"][0]["value"],
            2147483647
        );
        let int = serde_json::to_value(Column::new("i", SqlType::Integer)).expect("ok");
        assert_eq!(
            int["typeSignature"],
            serde_json::json!({"rawType":"integer","arguments":[]})
        );
    }

    #[test]
    fn page_data_slices() {
        let rows: Vec<Vec<serde_json::Value>> = (5..8).rev().map(|v| vec![v.into()]).collect();
        let data = PageData::Rows(&rows);
        assert_eq!(serde_json::to_string(&data).expect("ok"), "[[7],[6],[5]]");
        let tail = data.slice(1, 5);
        assert_eq!(serde_json::to_string(&tail).expect("ok"), "[[6],[5]]");
        assert_eq!(serde_json::to_string(&data.slice(9, 1)).expect("ok"), "[]");
    }

    #[test]
    fn error_json_has_trino_shape() {
        let err =
            QueryError::new(ErrorCode::SyntaxError, "line 1:1: bad").at(Some(ErrorLocation {
                line_number: 1,
                column_number: 1,
            }));
        let json = serde_json::to_value(&err).expect("ok");
        assert_eq!(json["errorCode"], 1);
        assert_eq!(json["errorName"], "SYNTAX_ERROR");
        assert_eq!(json["errorType"], "USER_ERROR");
        assert_eq!(json["errorLocation"]["columnNumber"], 1);
        assert_eq!(
            json["failureInfo"]["type"],
            "io.trino.sql.parser.ParsingException"
        );
        assert_eq!(json["failureInfo"]["suppressed"], serde_json::json!([]));
        assert_eq!(json["failureInfo"]["stack"], serde_json::json!([]));
    }

    #[test]
    fn url_encoding_matches_java() {
        assert_eq!(java_url_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(java_url_encode("x.y-z_*"), "x.y-z_*");
    }
}
