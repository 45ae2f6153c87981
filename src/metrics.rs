//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! Every label value comes from the configuration (listener, group, backend and policy names) or
//! from a fixed set (kinds, sources, results, HTTP status codes), never from what a client sends,
//! so the number of series stays bounded whatever the traffic.

use std::sync::atomic::Ordering;
use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::routing::strategy;
use crate::snapshot::Snapshot;

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queries_submitted: IntCounterVec,
    pub routing_fallback: IntCounterVec,
    pub sticky_resolution: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub backend_queued: IntGaugeVec,
    pub backend_running: IntGaugeVec,
    pub inflight_queries: IntGaugeVec,
    pub upstream_errors: IntCounterVec,
    pub retries: IntCounterVec,
    pub snapshot_version: IntGauge,
    pub config_reload: IntCounterVec,
    pub db_errors: IntCounterVec,
    pub history_dropped: IntCounter,
    pub admin_auth_failures: IntCounterVec,
    pub slow_headers: IntCounter,
    pub admin_connections_closed: IntCounterVec,
    pub uris_rewritten: IntCounter,
    pub rewrite_skipped: IntCounter,
    pub lingering_closes: IntCounterVec,
    pub statements_analyzed: IntCounterVec,
    pub login_legs: IntCounterVec,
    pub logins_pinned: IntCounter,
    pub queue_length: IntGaugeVec,
    pub queue_held: IntCounterVec,
    pub queue_rejections: IntCounterVec,
    pub queue_wait: HistogramVec,
    pub queue_forwarded: IntCounter,
}

/// A metric the registry refused: an invalid definition (name, help, labels, buckets), or a name
/// some other collector in the default registry already uses.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric `{name}`: {source}")]
pub struct MetricsError {
    name: &'static str,
    #[source]
    source: prometheus::Error,
}

/// Builds one metric and registers it in `registry`.
struct Registrar<'r> {
    registry: &'r Registry,
}

impl Registrar<'_> {
    fn add<M: Collector + Clone + 'static>(
        &self,
        name: &'static str,
        built: prometheus::Result<M>,
    ) -> Result<M, MetricsError> {
        let err = |source| MetricsError { name, source };
        let metric = built.map_err(err)?;
        self.registry
            .register(Box::new(metric.clone()))
            .map_err(err)?;
        Ok(metric)
    }

    fn counter(&self, name: &'static str, help: &str) -> Result<IntCounter, MetricsError> {
        self.add(name, IntCounter::new(name, help))
    }

    fn counter_vec(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        self.add(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &'static str, help: &str) -> Result<IntGauge, MetricsError> {
        self.add(name, IntGauge::new(name, help))
    }

    fn gauge_vec(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.add(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram_vec(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
        buckets: prometheus::Result<Vec<f64>>,
    ) -> Result<HistogramVec, MetricsError> {
        let built = buckets
            .and_then(|b| HistogramVec::new(HistogramOpts::new(name, help).buckets(b), labels));
        self.add(name, built)
    }
}

impl Metrics {
    /// Every metric of the gateway, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Metrics, MetricsError> {
        let r = Registrar { registry };
        Ok(Metrics {
            requests: r.counter_vec(
                "trino_edge_requests_total",
                "Requests answered, by listener, kind (submit|page|cancel|info|ui|segment|other), group, backend and HTTP status",
                &["listener", "kind", "group", "backend", "status"],
            )?,
            request_duration: r.histogram_vec(
                "trino_edge_request_duration_seconds",
                "Time from request to response head",
                &["kind", "group", "backend"],
                exponential_buckets(0.0005, 2.0, 16),
            )?,
            queries_submitted: r.counter_vec(
                "trino_edge_queries_submitted_total",
                "Queries a backend accepted (HTTP 200 to POST /v1/statement)",
                &["group", "backend", "policy"],
            )?,
            routing_fallback: r.counter_vec(
                "trino_edge_routing_fallback_total",
                "Submissions sent to another group because theirs had no available backend",
                &["from_group", "to_group"],
            )?,
            sticky_resolution: r.counter_vec(
                "trino_edge_sticky_resolution_total",
                "How follow-up requests found their backend (memory|coordinator_id|database|miss)",
                &["source"],
            )?,
            login_legs: r.counter_vec(
                "trino_edge_login_legs_total",
                "OAuth2 login requests (leg: token|initiate|callback) and how their backend was \
                 found (source: memory|database|miss)",
                &["leg", "source"],
            )?,
            queue_length: r.gauge_vec(
                "trino_edge_queue_length",
                "Queries held at the gateway waiting for a backend of the group",
                &["group"],
            )?,
            queue_held: r.counter_vec(
                "trino_edge_queue_held_total",
                "Submissions the gateway held in the group's queue",
                &["group"],
            )?,
            queue_rejections: r.counter_vec(
                "trino_edge_queue_rejections_total",
                "Held or holdable queries that left the queue without a backend, by reason \
                 (full|timeout|abandoned|canceled|group_removed|shutdown)",
                &["group", "reason"],
            )?,
            queue_wait: r.histogram_vec(
                "trino_edge_queue_wait_seconds",
                "Time a held query waited at the gateway before its hand-over",
                &["group"],
                exponential_buckets(0.01, 2.0, 18),
            )?,
            queue_forwarded: r.counter(
                "trino_edge_queue_polls_forwarded_total",
                "Polls of queries another gateway instance holds, forwarded to that instance",
            )?,
            logins_pinned: r.counter(
                "trino_edge_logins_pinned_total",
                "OAuth2 challenges seen: logins pinned to the backend that issued them",
            )?,
            backend_up: r.gauge_vec(
                "trino_edge_backend_up",
                "1 if the backend can take new queries (enabled and healthy)",
                &["backend", "group"],
            )?,
            backend_queued: r.gauge_vec(
                "trino_edge_backend_queued_queries",
                "Queued queries the backend reported at its last load probe",
                &["backend"],
            )?,
            backend_running: r.gauge_vec(
                "trino_edge_backend_running_queries",
                "Running queries the backend reported at its last load probe",
                &["backend"],
            )?,
            inflight_queries: r.gauge_vec(
                "trino_edge_inflight_queries",
                "Running queries on the backend as this gateway estimates them (report + started - finished since)",
                &["backend"],
            )?,
            upstream_errors: r.counter_vec(
                "trino_edge_upstream_errors_total",
                "Failures talking to backends (connect|timeout|reset|refused_5xx|resolve)",
                &["backend", "kind"],
            )?,
            retries: r.counter_vec(
                "trino_edge_retries_total",
                "Requests moved off this backend to another one",
                &["backend"],
            )?,
            snapshot_version: r.gauge(
                "trino_edge_snapshot_version",
                "Version of the routing snapshot in use",
            )?,
            config_reload: r.counter_vec(
                "trino_edge_config_reload_total",
                "Configuration reloads by result (success|failure)",
                &["result"],
            )?,
            db_errors: r.counter_vec(
                "trino_edge_db_errors_total",
                "Failed database operations (version|load|history|coordinator|lookup)",
                &["op"],
            )?,
            history_dropped: r.counter(
                "trino_edge_history_dropped_total",
                "History events dropped because the database could not keep up",
            )?,
            admin_auth_failures: r.counter_vec(
                "trino_edge_admin_auth_failures_total",
                "Refused admin API calls (missing|unknown_token|invalid_jwt|expired|forbidden)",
                &["reason"],
            )?,
            slow_headers: r.counter(
                "trino_edge_slow_headers_total",
                "Client connections closed because a request header was not complete within proxy.header_timeout",
            )?,
            admin_connections_closed: r.counter_vec(
                "trino_edge_admin_connections_closed_total",
                "Admin listener connections closed by the gateway, by reason (header_timeout: request head or TLS handshake not complete within admin.header_timeout; idle_timeout; max_connections: refused at accept)",
                &["reason"],
            )?,
            uris_rewritten: r.counter(
                "trino_edge_uris_rewritten_total",
                "Absolute URIs rewritten in statement pages (segment routing, forwarding: rewrite)",
            )?,
            rewrite_skipped: r.counter(
                "trino_edge_rewrite_skipped_total",
                "Statement pages whose URIs should have been rewritten but came compressed",
            )?,
            lingering_closes: r.counter_vec(
                "trino_edge_lingering_closes_total",
                "Early refusals after which the rest of the request body was read before closing (drained|limit|timeout|error)",
                &["result"],
            )?,
            statements_analyzed: r.counter_vec(
                "trino_edge_statements_analyzed_total",
                "Submissions held for policies on query content, by outcome (analyzed: the content conditions were evaluated; unparsed: the statement could not be analyzed; not_held: the body was not read, e.g. chunked or HTTP/2)",
                &["outcome"],
            )?,
        })
    }
}

/// The gateway's metrics in the default registry (next to the process metrics and Pingora's),
/// built on first use.
static REGISTERED: LazyLock<Result<Metrics, MetricsError>> = LazyLock::new(|| {
    #[cfg(target_os = "linux")]
    {
        let _ = prometheus::register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    Metrics::register(prometheus::default_registry())
});

/// Register the metrics now. Call once at startup, before anything counts: a failure is then a
/// clear startup error instead of a panic at the first request that touches [`METRICS`].
pub fn init() -> Result<(), &'static MetricsError> {
    REGISTERED.as_ref().map(|_| ())
}

/// Access to the registered [`Metrics`] (`METRICS.requests...`).
pub struct Registered(());

/// The gateway's metrics. Binaries call [`init`] at startup, which reports a failed registration
/// as an error; after that, reading them cannot fail.
pub static METRICS: Registered = Registered(());

impl std::ops::Deref for Registered {
    type Target = Metrics;

    fn deref(&self) -> &Metrics {
        match &*REGISTERED {
            Ok(m) => m,
            // Only reachable when `init` was skipped or its error ignored; a definition error is
            // caught by the unit test below, and `serve` refuses to start on any other.
            Err(e) => panic!("metrics unavailable: {e}"),
        }
    }
}

/// Status code as a label without allocating for the common codes.
pub fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    match status {
        0 => "0".into(),
        200 => "200".into(),
        204 => "204".into(),
        400 => "400".into(),
        404 => "404".into(),
        410 => "410".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        504 => "504".into(),
        s => s.to_string().into(),
    }
}

/// The `kind` values of `trino_edge_upstream_errors_total`.
pub const UPSTREAM_ERROR_KINDS: [&str; 6] = [
    "connect",
    "timeout",
    "reset",
    "refused_5xx",
    "resolve",
    "other",
];

/// Give the labelled counters the dashboard reads their series at zero for what `snap` configures,
/// so that its panels show 0 from the start instead of "No data" until the first reload, retry,
/// upstream error or fallback.
fn touch_counters(snap: &Snapshot) {
    let m = &*METRICS;
    for result in ["success", "failure"] {
        let _ = m.config_reload.with_label_values(&[result]);
    }
    for source in ["memory", "coordinator_id", "database", "miss"] {
        let _ = m.sticky_resolution.with_label_values(&[source]);
    }
    if snap.content_routing {
        for outcome in ["analyzed", "unparsed", "not_held"] {
            let _ = m.statements_analyzed.with_label_values(&[outcome]);
        }
    }
    for b in &snap.backends {
        let _ = m.retries.with_label_values(&[&*b.name]);
        for kind in UPSTREAM_ERROR_KINDS {
            let _ = m.upstream_errors.with_label_values(&[&*b.name, kind]);
        }
    }
    // Where a group without an available backend falls back to: a policy's fallback group, or
    // the default group.
    let default = snap.default_group;
    let pairs = snap
        .policies
        .iter()
        .map(|p| (p.group, p.fallback_group.unwrap_or(default)))
        .chain((0..snap.groups.len()).map(|g| (g, default)));
    for (from, to) in pairs {
        if from != to && !snap.groups[from].strict {
            let _ = m
                .routing_fallback
                .with_label_values(&[&*snap.groups[from].name, &*snap.groups[to].name]);
        }
    }
}

/// Bring the per-backend gauges in line with `snap` (and drop series of removed backends).
pub fn refresh_backend_gauges(snap: &Snapshot) {
    let m = &*METRICS;
    touch_counters(snap);
    m.snapshot_version.set(snap.version as i64);
    for g in [
        &m.backend_up,
        &m.backend_queued,
        &m.backend_running,
        &m.inflight_queries,
    ] {
        g.reset();
    }
    for b in &snap.backends {
        for &g in &b.groups {
            m.backend_up
                .with_label_values(&[&*b.name, &*snap.groups[g].name])
                .set(i64::from(strategy::is_routable(snap, b)));
        }
        let h = &b.runtime.health;
        if h.load_known.load(Ordering::Relaxed) {
            m.backend_queued
                .with_label_values(&[&*b.name])
                .set(h.reported_queued.load(Ordering::Relaxed));
            m.backend_running
                .with_label_values(&[&*b.name])
                .set(h.reported_running.load(Ordering::Relaxed));
        }
        m.inflight_queries
            .with_label_values(&[&*b.name])
            .set(b.running_estimate());
    }
}

/// The text exposition of the default registry (ours, process metrics and Pingora's, if any).
pub fn render(snap: &Snapshot) -> String {
    refresh_backend_gauges(snap);
    let mut out = Vec::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        tracing::warn!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_a_valid_definition() {
        let registry = Registry::new();
        Metrics::register(&registry).expect("valid definitions");
        // Each name once: registering the same set again is refused, with the metric named.
        let again = Metrics::register(&registry)
            .err()
            .expect("duplicate refused");
        assert!(
            again.to_string().contains("trino_edge_requests_total"),
            "{again}"
        );
    }

    #[test]
    fn the_default_registry_takes_them() {
        assert!(init().is_ok());
        METRICS.slow_headers.inc();
        assert!(METRICS.slow_headers.get() >= 1);
    }
}
