//! The `trino-edge` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use trino_edge::config::{self, ConfigError};
use trino_edge::demo::{self, DemoError, DemoOptions};
use trino_edge::emulator::{self, EmulatorConfig, RetrievalMode, SpoolingConfig};
use trino_edge::hybrid::cli::CliError as QueryError;
use trino_edge::latency_probe::ProbeError;
use trino_edge::metrics::MetricsError;
use trino_edge::server::{serve, ServeOptions};
use trino_edge::snapshot::{RuntimeRegistry, Snapshot};
use trino_edge::store::drift::{self, Existing};
use trino_edge::store::{Store, StoreError};
use trino_edge::sync::{redact, ConfigSource};

#[derive(Parser)]
#[command(
    name = "trino-edge",
    version,
    about = "A high-performance edge gateway for Trino"
)]
struct Cli {
    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listening sockets of a running instance (send it SIGQUIT).
        #[arg(long, short)]
        upgrade: bool,
        /// Who owns groups, backends and policies: the database (seeded from the file when empty;
        /// the admin API edits it) or the file (the admin API is read-only).
        #[arg(long, value_enum, default_value_t = ConfigSource::Database)]
        config_source: ConfigSource,
    },
    /// Apply the database migrations of `database.url` and exit.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print the effective routing table.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the gateway with two emulated Trino backends on loopback.
    Demo {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 8090)]
        admin_port: u16,
        /// Ports of the two emulated backends, e.g. `18081,18082`.
        #[arg(long, value_delimiter = ',', default_values_t = [18081, 18082])]
        backend_ports: Vec<u16>,
    },
    /// Run a hybrid query: remote Trino subqueries joined with local Parquet tables on the
    /// gateway (`POST /api/query/hybrid` of the admin API).
    Query {
        /// The final SQL (or use --sql, or --stdin).
        sql_arg: Option<String>,
        /// Admin API base URL.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        admin: String,
        /// Admin API bearer token (admin role).
        #[arg(long, env = "TRINO_EDGE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The final SQL.
        #[arg(long)]
        sql: Option<String>,
        /// `alias=SQL`: run SQL on Trino and register its result as table `alias`; repeatable.
        #[arg(long, value_name = "ALIAS=SQL")]
        register: Vec<String>,
        /// Read the whole JSON request from standard input.
        #[arg(long)]
        stdin: bool,
        /// Routing group of the remote subqueries (default: the routing policies decide).
        #[arg(long)]
        group: Option<String>,
        #[arg(long, value_enum, default_value_t = trino_edge::hybrid::cli::OutputFormat::Table)]
        format: trino_edge::hybrid::cli::OutputFormat,
    },
    /// A bare Pingora proxy with none of the gateway's logic: the benchmark baseline.
    #[command(hide = true)]
    Passthrough {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Fixed-rate latency driver: RATE requests/s for SECONDS, prints p50 p99 p99.9 (µs).
    #[command(hide = true)]
    LatencyProbe {
        url: String,
        rate: f64,
        seconds: f64,
        /// POST this body (else GET).
        #[arg(long)]
        post: Option<String>,
    },
    /// Run one emulated Trino coordinator (for benchmarks and manual tests).
    Emulator {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        rows_per_page: usize,
        #[arg(long, default_value_t = 0)]
        page_delay_ms: u64,
        #[arg(long)]
        coordinator_id: Option<String>,
        /// Behave like a Trino without `http-server.process-forwarded`: refuse requests with
        /// `X-Forwarded-*` headers (HTTP 406).
        #[arg(long)]
        reject_forwarded: bool,
        /// Serve results with the spooling protocol to clients that send
        /// `X-Trino-Query-Data-Encoding`, with this segment retrieval mode.
        #[arg(long, value_enum)]
        spooling: Option<RetrievalMode>,
        /// Rows per spooled segment at most.
        #[arg(long, default_value_t = 10_000, requires = "spooling")]
        segment_rows: usize,
        /// Result pages of at most this many rows travel as one inline segment.
        #[arg(long, default_value_t = 100, requires = "spooling")]
        inline_rows: usize,
    },
}

/// Why a command failed; printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metrics(#[from] &'static MetricsError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error("--backend-ports takes exactly two ports, e.g. 18081,18082")]
    BackendPorts,
    /// From the layers that report their problems as text (`serve`, `passthrough`, the routing
    /// table of `check-config`).
    #[error("{0}")]
    Message(String),
}

#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    /// `url` is redacted.
    #[error("database {url}: {source}")]
    Connect { url: String, source: StoreError },
    #[error("migration failed: {0}")]
    Migrate(#[source] StoreError),
}

#[derive(Debug, thiserror::Error)]
enum EmulatorError {
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Signal(#[source] std::io::Error),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Serve {
            config,
            upgrade,
            config_source,
        } => {
            let loaded = config::load(&config)?;
            trino_edge::metrics::init()?;
            serve(
                loaded.config,
                ServeOptions {
                    file: Some(loaded.file),
                    upgrade,
                    source: config_source,
                },
            )
            .map_err(Error::Message)
        }
        Command::Migrate { config } => Ok(migrate(&config::load(&config)?.config)?),
        Command::CheckConfig { config } => {
            let loaded = config::load(&config)?;
            let snap = Snapshot::compile(&loaded.config, 1, &RuntimeRegistry::default())
                .map_err(|e| Error::Message(e.to_string()))?;
            println!("{}: OK\n\n{}", config.display(), snap.describe());
            compare_with_database(&loaded.config);
            Ok(())
        }
        Command::Demo {
            port,
            admin_port,
            backend_ports,
        } => match backend_ports[..] {
            [b1, b2] => Ok(demo::run(DemoOptions {
                port,
                admin_port,
                backend_ports: [b1, b2],
            })?),
            _ => Err(Error::BackendPorts),
        },
        Command::Query {
            sql_arg,
            admin,
            token,
            sql,
            register,
            stdin,
            group,
            format,
        } => Ok(trino_edge::hybrid::cli::run(
            trino_edge::hybrid::cli::QueryArgs {
                admin,
                token,
                positional_sql: sql_arg,
                sql,
                register,
                stdin,
                group,
                format,
            },
        )?),
        Command::Passthrough {
            listen,
            upstream,
            threads,
        } => trino_edge::passthrough::run(listen, upstream, threads).map_err(Error::Message),
        Command::LatencyProbe {
            url,
            rate,
            seconds,
            post,
        } => Ok(trino_edge::latency_probe::run_probe(
            url, rate, seconds, post,
        )?),
        Command::Emulator {
            listen,
            rows_per_page,
            page_delay_ms,
            coordinator_id,
            reject_forwarded,
            spooling,
            segment_rows,
            inline_rows,
        } => Ok(run_emulator(
            EmulatorConfig {
                name: format!("emulator-{}", listen.port()),
                coordinator_id,
                rows_per_page,
                page_delay: Duration::from_millis(page_delay_ms),
                process_forwarded: !reject_forwarded,
                spooling: spooling.map(|mode| SpoolingConfig {
                    mode,
                    segment_rows,
                    inline_rows,
                }),
                oauth2: None,
            },
            listen,
        )?),
    }
}

fn migrate(config: &config::Config) -> Result<(), MigrateError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MigrateError::Runtime)?;
    rt.block_on(async {
        let url = &config.database.url;
        let store = Store::connect(url)
            .await
            .map_err(|source| MigrateError::Connect {
                url: redact(url),
                source,
            })?;
        let applied = store.migrate().await.map_err(MigrateError::Migrate)?;
        println!(
            "{}: {applied} migration(s) applied, schema up to date",
            redact(url)
        );
        Ok(())
    })
}

/// `check-config`: compare the file's groups, backends and policies with what `database.url`
/// already holds (which `serve` uses instead). Differences are a warning, an unreachable database a
/// note: neither fails the check. Never creates or changes the database.
fn compare_with_database(config: &config::Config) {
    let url = redact(&config.database.url);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("note: not compared with the database {url}: {e}");
            return;
        }
    };
    let found = rt.block_on(drift::read_existing(
        &config.database.url,
        drift::CHECK_TIMEOUT,
    ));
    match found {
        Err(e) => eprintln!("note: not compared with the database {url}: {e}"),
        Ok(Existing::Nothing(why)) => println!(
            "database {url}: {why}; `serve` (with --config-source database) seeds it from this \
             file's groups, backends and policies"
        ),
        Ok(Existing::Routing(stored)) => {
            let diffs = drift::compare(config, &stored);
            if diffs.is_empty() {
                println!("database {url}: its groups, backends and policies match this file's");
                return;
            }
            eprintln!(
                "warning: the database {url} holds groups, backends and policies that differ \
                 from this file's; `serve` (with the default --config-source database) routes by \
                 the database's, not by the routing table above. {} difference(s):",
                diffs.len()
            );
            for d in &diffs {
                eprintln!("  {d} (admin API: {})", d.admin_request());
            }
            eprintln!("{}.", capitalized(drift::HOW_TO_APPLY));
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn run_emulator(cfg: EmulatorConfig, listen: SocketAddr) -> Result<(), EmulatorError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(EmulatorError::Runtime)?;
    rt.block_on(async move {
        let h = emulator::start(listen, cfg)
            .await
            .map_err(|source| EmulatorError::Listen { listen, source })?;
        eprintln!(
            "emulated Trino coordinator {} on {}",
            h.coordinator_id(),
            h.url()
        );
        if let Some(storage) = h.storage_url() {
            eprintln!("spooled segments: storage/worker listener on {storage}");
        }
        tokio::signal::ctrl_c()
            .await
            .map_err(EmulatorError::Signal)?;
        h.shutdown();
        Ok(())
    })
}
