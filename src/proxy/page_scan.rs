//! Tells from the head of a result page whether the query is finished, without parsing the page.
//!
//! Trino writes `nextUri` before `columns`, `data`, `stats` and `error` (see the recorded
//! responses), and a finished query's last page has no `nextUri`. So the first few hundred bytes
//! decide — also for gzip/deflate pages, of which only the head is inflated. The page itself
//! streams on untouched; this only looks at copies of its first bytes.

use std::io::Write;

use flate2::write::{DeflateDecoder, GzDecoder};
use memchr::memmem;

/// Enough for Trino's page head (id, infoUri, partialCancelUri, nextUri).
const HEAD: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: feed more.
    Undecided,
    /// The page has a `nextUri`: the query goes on.
    Continues,
    /// The page has none: this was the query's last page.
    Finished,
}

enum Decoder {
    Identity(Vec<u8>),
    Gzip(GzDecoder<Vec<u8>>),
    Deflate(DeflateDecoder<Vec<u8>>),
}

pub struct PageScan {
    decoder: Decoder,
    verdict: Verdict,
}

impl PageScan {
    /// `None` for content encodings we cannot peek into (then nothing is concluded).
    pub fn new(content_encoding: Option<&[u8]>) -> Option<Self> {
        let decoder = match content_encoding {
            None => Decoder::Identity(Vec::with_capacity(512)),
            Some(e) if e.eq_ignore_ascii_case(b"identity") => {
                Decoder::Identity(Vec::with_capacity(512))
            }
            Some(e) if e.eq_ignore_ascii_case(b"gzip") => {
                Decoder::Gzip(GzDecoder::new(Vec::with_capacity(HEAD)))
            }
            Some(e) if e.eq_ignore_ascii_case(b"deflate") => {
                Decoder::Deflate(DeflateDecoder::new(Vec::with_capacity(HEAD)))
            }
            Some(_) => return None,
        };
        Some(PageScan {
            decoder,
            verdict: Verdict::Undecided,
        })
    }

    fn head(&self) -> &[u8] {
        match &self.decoder {
            Decoder::Identity(v) => v,
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Deflate(d) => d.get_ref(),
        }
    }

    /// Feed the next body chunk; returns the verdict so far.
    pub fn feed(&mut self, chunk: &[u8]) -> Verdict {
        if self.verdict != Verdict::Undecided {
            return self.verdict;
        }
        let have = self.head().len();
        let ok = match &mut self.decoder {
            Decoder::Identity(v) => {
                v.extend_from_slice(&chunk[..chunk.len().min(HEAD - have)]);
                true
            }
            // Inflating a little past HEAD is harmless; a corrupt stream just ends the scan.
            Decoder::Gzip(d) => d.write_all(chunk).and_then(|_| d.flush()).is_ok(),
            Decoder::Deflate(d) => d.write_all(chunk).and_then(|_| d.flush()).is_ok(),
        };
        if !ok {
            // Undecidable: say "continues", which only means "do not count a finish".
            self.verdict = Verdict::Continues;
            return self.verdict;
        }
        self.verdict = decide(self.head());
        if self.verdict == Verdict::Undecided && self.head().len() >= HEAD {
            self.verdict = Verdict::Continues;
        }
        self.verdict
    }

    /// The body ended: a page that never showed `nextUri` had none.
    pub fn finish(&mut self) -> Verdict {
        if self.verdict == Verdict::Undecided {
            self.verdict = if self.head().is_empty() {
                Verdict::Continues
            } else {
                Verdict::Finished
            };
        }
        self.verdict
    }
}

fn decide(head: &[u8]) -> Verdict {
    let next = memmem::find(head, b"\"nextUri\"");
    let later = [&b"\"columns\""[..], b"\"data\"", b"\"stats\"", b"\"error\""]
        .iter()
        .filter_map(|k| memmem::find(head, k))
        .min();
    match (next, later) {
        (Some(n), Some(l)) if n < l => Verdict::Continues,
        (Some(_), None) => Verdict::Continues,
        (_, Some(_)) => Verdict::Finished,
        (None, None) => Verdict::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/trino-responses/models/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn scan_in_chunks(body: &[u8], chunk: usize, encoding: Option<&[u8]>) -> Verdict {
        let mut s = PageScan::new(encoding).unwrap();
        for c in body.chunks(chunk) {
            if s.feed(c) != Verdict::Undecided {
                return s.feed(&[]);
            }
        }
        s.finish()
    }

    #[test]
    fn recorded_trino_pages() {
        for (name, want) in [
            ("query_result_queued.json", Verdict::Continues),
            ("query_result_planning.json", Verdict::Continues),
            ("query_result_running.json", Verdict::Continues),
            ("query_result_finished.json", Verdict::Finished),
            ("query_result_failed.json", Verdict::Finished),
            ("query_result_empty.json", Verdict::Finished),
            ("query_result_finished_prepare.json", Verdict::Finished),
        ] {
            let body = fixture(name);
            for chunk in [1, 7, 100, 100_000] {
                assert_eq!(
                    scan_in_chunks(&body, chunk, None),
                    want,
                    "{name} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn compressed_pages() {
        for (name, want) in [
            ("query_result_running.json", Verdict::Continues),
            ("query_result_finished.json", Verdict::Finished),
        ] {
            let body = fixture(name);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&body).unwrap();
            let gz = gz.finish().unwrap();
            assert_eq!(scan_in_chunks(&gz, 50, Some(b"gzip")), want, "{name} gzip");
            let mut df =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            df.write_all(&body).unwrap();
            assert_eq!(
                scan_in_chunks(&df.finish().unwrap(), 50, Some(b"deflate")),
                want,
                "{name} deflate"
            );
        }
        assert!(PageScan::new(Some(b"br")).is_none());
    }

    /// Pages of the spooling protocol: `data` is an object of segments, the rule is the same.
    #[test]
    fn spooled_pages() {
        let segments = r#""data":{"encoding":"json+zstd","segments":[{"type":"spooled","uri":"http://gw/v1/spooled/q/download/a","ackUri":"http://gw/v1/spooled/q/ack/a","metadata":{"rowOffset":0,"rowsCount":10,"segmentSize":99},"headers":{}}]}"#;
        let going = format!(
            r#"{{"id":"q","nextUri":"http://gw/v1/statement/executing/q/y/3","columns":[],{segments},"stats":{{"state":"RUNNING"}}}}"#
        );
        let last =
            format!(r#"{{"id":"q","columns":[],{segments},"stats":{{"state":"FINISHED"}}}}"#);
        for chunk in [1, 9, 4096] {
            assert_eq!(
                scan_in_chunks(going.as_bytes(), chunk, None),
                Verdict::Continues
            );
            assert_eq!(
                scan_in_chunks(last.as_bytes(), chunk, None),
                Verdict::Finished
            );
        }
    }

    #[test]
    fn garbage_never_counts_as_a_finish_by_accident() {
        assert_eq!(scan_in_chunks(b"", 10, None), Verdict::Continues);
        assert_eq!(
            scan_in_chunks(&[0xff; 10], 10, Some(b"gzip")),
            Verdict::Continues
        );
        assert_eq!(
            scan_in_chunks(&vec![b'x'; 10_000], 100, None),
            Verdict::Continues
        );
    }
}
