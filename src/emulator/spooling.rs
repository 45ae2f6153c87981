//! The spooling protocol (Trino 466+): result pages carry encoded *segments* instead of a row
//! array, either inline (base64 in the page) or spooled (downloaded by the client from a URI
//! and acknowledged afterwards).
//!
//! The emulator's "spooling manager" is an in-memory map from opaque random segment ids to the
//! encoded bytes, a per-segment key (sent back by clients in `X-Trino-Emulator-Segment-Key`,
//! like the encryption-key headers of Trino's file-system spooling manager) and a presigned-URL
//! signature. Segment ids mean nothing to another emulator instance, which answers 404, as a
//! coordinator of another cluster would.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;

use super::protocol::{EncodedData, PageData, Segment, SegmentMetadata};
use super::{RetrievalMode, SpoolingConfig};

/// Request header listing the encodings a client accepts, in order of preference.
pub(crate) const ENCODING_HEADER: &str = "x-trino-query-data-encoding";

/// Header a client must send with every segment download: the segment's key.
pub(crate) const SEGMENT_KEY_HEADER: &str = "X-Trino-Emulator-Segment-Key";

/// Query parameter carrying the presigned storage URL's signature.
pub(crate) const SIGNATURE_PARAM: &str = "X-Amz-Signature";

/// zstd level of `json+zstd` segments (zstd's default).
const ZSTD_LEVEL: i32 = 3;

/// The encodings the emulator's spooling manager supports (Trino's JSON encoders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    JsonZstd,
    JsonLz4,
}

impl Encoding {
    /// The encoding id clients ask for and the page's `encoding` names.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::JsonZstd => "json+zstd",
            Self::JsonLz4 => "json+lz4",
        }
    }

    fn from_id(id: &str) -> Option<Self> {
        [Self::Json, Self::JsonZstd, Self::JsonLz4]
            .into_iter()
            .find(|e| e.id() == id)
    }

    /// The first supported encoding of a comma-separated preference list, like Trino's
    /// `PreferredQueryDataEncoderSelector`.
    pub(crate) fn select(preferences: &str) -> Option<Self> {
        preferences
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .find_map(Self::from_id)
    }

    /// Encodes the JSON text of a row array: as is, a zstd frame (with the content size in its
    /// header, which Python's `zstandard` needs) or a raw LZ4 block (no size prefix; decoders
    /// take the size from `uncompressedSize`).
    pub(crate) fn encode(self, json: Vec<u8>) -> Result<Encoded, SpoolError> {
        let uncompressed = u64::try_from(json.len()).unwrap_or(u64::MAX);
        let (bytes, uncompressed_size) = match self {
            Self::Json => (json, None),
            Self::JsonZstd => (
                zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(SpoolError::Zstd)?,
                Some(uncompressed),
            ),
            Self::JsonLz4 => (lz4_flex::block::compress(&json), Some(uncompressed)),
        };
        Ok(Encoded {
            bytes: Bytes::from(bytes),
            uncompressed_size,
        })
    }
}

/// A segment's encoded bytes.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Bytes,
    /// Set for compressed encodings.
    pub uncompressed_size: Option<u64>,
}

/// Why a page could not be turned into segments (the query then fails with
/// `SERIALIZATION_ERROR`, as in Trino).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("cannot serialise rows as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("zstd compression failed: {0}")]
    Zstd(#[source] std::io::Error),
}

/// Why a segment download is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownloadError {
    /// Never issued by this instance, or already acknowledged: 404.
    NotFound,
    /// `X-Trino-Emulator-Segment-Key` missing or wrong: 401.
    BadKey,
    /// The presigned URL's signature is missing or wrong: 403.
    BadSignature,
}

/// How a download reached the bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access<'a> {
    /// Through the coordinator or a worker: only the key header is checked.
    Proxied,
    /// A presigned storage URL with this signature parameter (if any).
    Presigned(Option<&'a str>),
}

/// One stored segment.
#[derive(Debug)]
pub(crate) struct StoredSegment {
    pub bytes: Bytes,
    key: String,
    signature: String,
}

#[derive(Default)]
struct Store {
    segments: HashMap<String, Arc<StoredSegment>>,
    /// Segment ids by query id, so that a forgotten query drops its segments.
    by_query: HashMap<String, HashSet<String>>,
}

/// The emulator's spooling manager. Always present: without a `SpoolingConfig` it issues
/// nothing and answers 404 for every segment.
pub(crate) struct Spooler {
    config: Option<SpoolingConfig>,
    /// Address of the storage/worker listener (`emulator::start` binds it when the retrieval
    /// mode needs it). Without one, storage URLs point at the coordinator, which serves the
    /// storage path too, and WORKER_PROXY streams from the coordinator.
    side_addr: OnceLock<SocketAddr>,
    store: Mutex<Store>,
    pub issued: AtomicU64,
    pub downloads: AtomicU64,
    pub acks: AtomicU64,
    pub not_found: AtomicU64,
}

impl Spooler {
    /// The segment store, recovering from poisoning (a panic elsewhere must not turn every later
    /// request into another panic).
    fn locked_store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn new(config: Option<SpoolingConfig>) -> Self {
        Self {
            config,
            side_addr: OnceLock::new(),
            store: Mutex::new(Store::default()),
            issued: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
        }
    }

    pub(crate) fn mode(&self) -> Option<RetrievalMode> {
        self.config.as_ref().map(|c| c.mode)
    }

    /// The encoding a submission gets: `None` (the direct protocol) without a spooling
    /// manager, without the header, or when no listed encoding is supported.
    pub(crate) fn select(&self, headers: &HeaderMap) -> Option<Encoding> {
        self.config.as_ref()?;
        let preferences = headers.get(ENCODING_HEADER)?.to_str().ok()?;
        Encoding::select(preferences)
    }

    pub(crate) fn set_side_addr(&self, addr: SocketAddr) {
        let _ = self.side_addr.set(addr);
    }

    pub(crate) fn side_addr(&self) -> Option<SocketAddr> {
        self.side_addr.get().copied()
    }

    /// Turns one result page into segments: one inline segment when the page has at most
    /// `inline_rows` rows, else spooled segments of at most `segment_rows` rows each, stored
    /// until acknowledged. `row_offset` is the number of rows before the page; `base` the
    /// coordinator's `scheme://authority` for the download and ack URIs.
    pub(crate) fn encode_page(
        &self,
        query_id: &str,
        encoding: Encoding,
        rows: &PageData<'_>,
        row_offset: u64,
        base: &str,
    ) -> Result<EncodedData, SpoolError> {
        let total = rows.len();
        let config = self.config.clone().unwrap_or_default();
        let inline_rows = u64::try_from(config.inline_rows).unwrap_or(u64::MAX);
        let mut segments = Vec::new();
        if total <= inline_rows {
            let encoded = encoding.encode(serde_json::to_vec(rows)?)?;
            segments.push(Segment::Inline {
                data: base64::engine::general_purpose::STANDARD.encode(&encoded.bytes),
                metadata: metadata(row_offset, total, &encoded),
            });
        } else {
            let per_segment = u64::try_from(config.segment_rows.max(1)).unwrap_or(u64::MAX);
            let mut done = 0;
            while done < total {
                let chunk = rows.slice(done, per_segment);
                let count = chunk.len();
                let encoded = encoding.encode(serde_json::to_vec(&chunk)?)?;
                segments.push(self.spool(
                    query_id,
                    config.mode,
                    metadata(row_offset + done, count, &encoded),
                    encoded.bytes,
                    base,
                ));
                done += count;
            }
        }
        self.issued.fetch_add(
            u64::try_from(segments.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(EncodedData {
            encoding: encoding.id(),
            segments,
        })
    }

    fn spool(
        &self,
        query_id: &str,
        mode: RetrievalMode,
        metadata: SegmentMetadata,
        bytes: Bytes,
        base: &str,
    ) -> Segment {
        let id = random_token(24);
        let key = random_token(16);
        let signature = format!("{:032x}", fastrand::u128(..));
        let uri = match mode {
            RetrievalMode::Storage => self.storage_uri(base, &id, &signature),
            RetrievalMode::CoordinatorStorageRedirect
            | RetrievalMode::CoordinatorProxy
            | RetrievalMode::WorkerProxy => format!("{base}/v1/spooled/download/{id}"),
        };
        let segment = Segment::Spooled {
            uri,
            ack_uri: format!("{base}/v1/spooled/ack/{id}"),
            metadata,
            headers: [(SEGMENT_KEY_HEADER, key.clone())],
        };
        let mut store = self.locked_store();
        store
            .by_query
            .entry(query_id.to_string())
            .or_default()
            .insert(id.clone());
        store.segments.insert(
            id,
            Arc::new(StoredSegment {
                bytes,
                key,
                signature,
            }),
        );
        segment
    }

    /// The presigned URL of a segment on the storage listener.
    pub(crate) fn storage_uri(&self, base: &str, id: &str, signature: &str) -> String {
        let host = self
            .side_addr()
            .map_or_else(|| base.to_string(), |a| format!("http://{a}"));
        format!("{host}/spool/{id}?{SIGNATURE_PARAM}={signature}")
    }

    /// The presigned storage URL of a stored segment (COORDINATOR_STORAGE_REDIRECT).
    pub(crate) fn presigned(&self, base: &str, id: &str) -> Result<String, DownloadError> {
        let segment = self.find(id)?;
        Ok(self.storage_uri(base, id, &segment.signature))
    }

    /// A stored segment; counts unknown ids.
    pub(crate) fn find(&self, id: &str) -> Result<Arc<StoredSegment>, DownloadError> {
        let found = self.locked_store().segments.get(id).cloned();
        found.ok_or_else(|| {
            self.not_found.fetch_add(1, Ordering::Relaxed);
            DownloadError::NotFound
        })
    }

    /// Serves a segment's bytes after checking the key header and, for presigned storage URLs,
    /// the signature. Counts the download.
    pub(crate) fn download(
        &self,
        id: &str,
        headers: &HeaderMap,
        access: Access<'_>,
    ) -> Result<Bytes, DownloadError> {
        let segment = self.find(id)?;
        if let Access::Presigned(signature) = access {
            if signature != Some(segment.signature.as_str()) {
                return Err(DownloadError::BadSignature);
            }
        }
        let key = headers
            .get(SEGMENT_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        if key != Some(segment.key.as_str()) {
            return Err(DownloadError::BadKey);
        }
        self.downloads.fetch_add(1, Ordering::Relaxed);
        Ok(segment.bytes.clone())
    }

    /// Acknowledges (deletes) a segment; false for unknown ids (counted).
    pub(crate) fn ack(&self, id: &str) -> bool {
        let removed = self.locked_store().segments.remove(id).is_some();
        if removed {
            self.acks.fetch_add(1, Ordering::Relaxed);
        } else {
            self.not_found.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Drops the segments of queries the registry forgot.
    pub(crate) fn forget_queries(&self, query_ids: &[String]) {
        if query_ids.is_empty() {
            return;
        }
        let mut store = self.locked_store();
        for query_id in query_ids {
            if let Some(ids) = store.by_query.remove(query_id) {
                for id in ids {
                    store.segments.remove(&id);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn stored(&self) -> usize {
        self.locked_store().segments.len()
    }
}

fn metadata(row_offset: u64, rows_count: u64, encoded: &Encoded) -> SegmentMetadata {
    SegmentMetadata {
        row_offset,
        rows_count,
        segment_size: u64::try_from(encoded.bytes.len()).unwrap_or(u64::MAX),
        uncompressed_size: encoded.uncompressed_size,
    }
}

/// `len` random bytes, base64url without padding: opaque segment ids and keys.
fn random_token(len: usize) -> String {
    let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_selection_takes_the_first_supported() {
        assert_eq!(
            Encoding::select("json+zstd,json+lz4,json"),
            Some(Encoding::JsonZstd)
        );
        assert_eq!(
            Encoding::select(" arrow , json+lz4"),
            Some(Encoding::JsonLz4)
        );
        assert_eq!(Encoding::select("arrow"), None);
        assert_eq!(Encoding::select(",,"), None);
        assert_eq!(Encoding::select("JSON"), None, "ids are case-sensitive");
    }

    #[test]
    fn encodings_round_trip() {
        let json = br#"[[1],[2],[3]]"#.repeat(100);
        let plain = Encoding::Json.encode(json.clone()).expect("json");
        assert_eq!(plain.bytes, json);
        assert_eq!(plain.uncompressed_size, None);

        let zstd = Encoding::JsonZstd.encode(json.clone()).expect("zstd");
        assert_eq!(zstd.uncompressed_size, Some(json.len() as u64));
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&zstd.bytes).ok(),
            Some(Some(json.len() as u64)),
            "the frame header carries the content size"
        );
        assert_eq!(
            zstd::stream::decode_all(&zstd.bytes[..]).expect("zstd"),
            json
        );

        let lz4 = Encoding::JsonLz4.encode(json.clone()).expect("lz4");
        assert_eq!(
            lz4_flex::block::decompress(&lz4.bytes, json.len()).expect("lz4"),
            json
        );
    }

    #[test]
    fn pages_split_into_segments_with_offsets() {
        let spooler = Spooler::new(Some(SpoolingConfig {
            mode: RetrievalMode::CoordinatorProxy,
            segment_rows: 4,
            inline_rows: 2,
        }));
        let values: Vec<Vec<serde_json::Value>> = (11..21).map(|v| vec![v.into()]).collect();
        let rows = PageData::Rows(&values);
        let data = spooler
            .encode_page("q", Encoding::Json, &rows, 100, "http://h")
            .expect("encode");
        let json = serde_json::to_value(&data).expect("json");
        let segments = json["segments"].as_array().expect("segments");
        assert_eq!(segments.len(), 3);
        let offsets: Vec<u64> = segments
            .iter()
            .map(|s| s["metadata"]["rowOffset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(offsets, [100, 104, 108]);
        assert_eq!(segments[2]["metadata"]["rowsCount"], 2);
        assert_eq!(segments[0]["type"], "spooled");
        assert!(segments[0]["metadata"].get("uncompressedSize").is_none());
        let uri = segments[1]["uri"].as_str().expect("uri");
        let id = uri.rsplit('/').next().expect("id");
        assert_eq!(id.len(), 32);
        assert_eq!(
            segments[1]["ackUri"],
            format!("http://h/v1/spooled/ack/{id}")
        );
        let key = segments[1]["headers"][SEGMENT_KEY_HEADER][0]
            .as_str()
            .expect("key");
        let mut headers = HeaderMap::new();
        assert_eq!(
            spooler.download(id, &headers, Access::Proxied),
            Err(DownloadError::BadKey)
        );
        headers.insert(SEGMENT_KEY_HEADER, key.parse().expect("header"));
        let bytes = spooler
            .download(id, &headers, Access::Proxied)
            .expect("download");
        assert_eq!(&bytes[..], b"[[15],[16],[17],[18]]");
        assert_eq!(spooler.stored(), 3);
        spooler.forget_queries(&["q".to_string()]);
        assert_eq!(spooler.stored(), 0);
        assert_eq!(
            spooler.download(id, &headers, Access::Proxied),
            Err(DownloadError::NotFound)
        );

        // Small pages are one inline segment.
        let two: Vec<Vec<serde_json::Value>> = (1..3).map(|v| vec![v.into()]).collect();
        let small = PageData::Rows(&two);
        let data = spooler
            .encode_page("q", Encoding::Json, &small, 0, "http://h")
            .expect("encode");
        let json = serde_json::to_value(&data).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"encoding": "json", "segments": [{"type": "inline",
                "data": "W1sxXSxbMl1d",
                "metadata": {"rowOffset": 0, "rowsCount": 2, "segmentSize": 9}}]})
        );
        assert_eq!(spooler.issued.load(Ordering::Relaxed), 4);
    }
}
