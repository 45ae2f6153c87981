//! `trino-edge demo`: the gateway plus two emulated Trino backends on loopback, for a first look.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

use crate::config::{parse_str, ConfigError};
use crate::emulator::{self, EmulatorConfig};
use crate::server::{serve, ServeOptions};
use crate::sync::ConfigSource;

pub struct DemoOptions {
    pub port: u16,
    pub admin_port: u16,
    pub backend_ports: [u16; 2],
}

/// Why the demo could not start (or the gateway it runs stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start emulated backend on {addr}: {source}")]
    Backend {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Thread(#[source] std::io::Error),
    /// The backends' thread ended before it said whether they started.
    #[error("{0}")]
    Lost(#[source] std::sync::mpsc::RecvError),
    #[error("{0}")]
    Orders(#[source] ArrowError),
    #[error("cannot write {}: {source}", path.display())]
    OrdersFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parquet(#[source] ParquetError),
    #[error("{0}")]
    Config(#[source] ConfigError),
    #[error("{0}")]
    Metrics(#[source] &'static crate::metrics::MetricsError),
    /// `serve` failed (it reports its problems as text).
    #[error("{0}")]
    Serve(String),
}

/// Start the emulators on their own runtime thread (Pingora owns the main thread), then serve.
pub fn run(opts: DemoOptions) -> Result<(), DemoError> {
    crate::metrics::init().map_err(DemoError::Metrics)?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<Vec<String>, DemoError>>();
    let ports = opts.backend_ports;
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(DemoError::Runtime(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let mut handles = Vec::new();
                for (i, port) in ports.iter().enumerate() {
                    let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                    let cfg = EmulatorConfig {
                        name: format!("trino-{}", i + 1),
                        ..EmulatorConfig::default()
                    };
                    match emulator::start(addr, cfg).await {
                        Ok(h) => handles.push(h),
                        Err(source) => {
                            let _ = tx.send(Err(DemoError::Backend { addr, source }));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok(handles.iter().map(|h| h.url()).collect()));
                // Keep the backends (and their runtime) alive for the life of the process.
                std::future::pending::<()>().await;
                drop(handles);
            });
        })
        .map_err(DemoError::Thread)?;
    let urls = rx.recv().map_err(DemoError::Lost)??;

    // A fresh embedded database per demo run: the admin API edits it like a real deployment's.
    let db_path = std::env::temp_dir().join(format!("trino-edge-demo-{}.db", opts.admin_port));
    let _ = std::fs::remove_file(&db_path);
    let db_url = format!("sqlite://{}", db_path.display());
    // A local Parquet table for hybrid queries: a week of orders to join with the emulated
    // `web.daily` traffic.
    let orders_path = std::env::temp_dir().join(format!(
        "trino-edge-demo-{}-orders.parquet",
        opts.admin_port
    ));
    write_demo_orders(&orders_path)?;
    let yaml = format!(
        r#"
proxy:
  listeners:
    - {{ name: main, address: "127.0.0.1:{port}" }}
admin:
  address: "127.0.0.1:{admin}"
routing:
  default_group: adhoc
groups:
  - {{ name: adhoc, strategy: round_robin }}
backends:
  - {{ name: trino-1, url: "{b1}", group: adhoc }}
  - {{ name: trino-2, url: "{b2}", group: adhoc }}
database:
  url: "{db}"
server:
  grace_period: 0s
  graceful_shutdown_timeout: 1s
hybrid:
  tables:
    orders: "{orders}"
"#,
        port = opts.port,
        admin = opts.admin_port,
        b1 = urls[0],
        b2 = urls[1],
        db = db_url,
        orders = orders_path.display(),
    );
    let config = parse_str("<demo>", &yaml).map_err(DemoError::Config)?;
    let gw = format!("http://127.0.0.1:{}", opts.port);
    println!(
        r#"
trino-edge demo
  gateway   {gw}   (point any Trino client here)
  console   http://127.0.0.1:{admin}/   (web console; API docs at /docs)
  admin     http://127.0.0.1:{admin}/api/v1/backends
  backends  trino-1 {b1}, trino-2 {b2}  (emulated Trino, group `adhoc`, round robin)

Try it:
  curl -s -X POST -H 'X-Trino-User: demo' --data 'SELECT 1' {gw}/v1/statement
  python3 -c "import trino; c = trino.dbapi.connect(host='127.0.0.1', port={port}, user='demo').cursor(); c.execute('SELECT count(*) FROM tpch.tiny.lineitem'); print(c.fetchall())"
  java -jar trino-cli.jar --server {gw} --user demo --execute 'SELECT name, regionkey FROM tpch.tiny.nation ORDER BY 1 LIMIT 5'

Operate it (state lives in {db}):
  curl -s http://127.0.0.1:{admin}/api/v1/backends
  curl -s -X POST http://127.0.0.1:{admin}/api/v1/backends/trino-2/deactivate   # drain trino-2
  curl -s http://127.0.0.1:{admin}/metrics | grep trino_edge_queries_submitted

Join local Parquet (`orders`) with a result computed on Trino (hybrid query):
  trino-edge query --admin http://127.0.0.1:{admin} --register 'traffic=SELECT * FROM web.daily' \\
    'SELECT o.date, o.orders, t.views FROM orders o JOIN traffic t ON o.date = t.date ORDER BY 1'

Ctrl-C stops everything.
"#,
        admin = opts.admin_port,
        port = opts.port,
        b1 = urls[0],
        b2 = urls[1],
        db = db_path.display(),
    );
    serve(
        config,
        ServeOptions {
            source: ConfigSource::Database,
            ..ServeOptions::default()
        },
    )
    .map_err(DemoError::Serve)
}

/// Seven days of orders (2024-01-01..07), the local half of the demo's hybrid query.
fn write_demo_orders(path: &Path) -> Result<(), DemoError> {
    use datafusion::arrow::array::{Date32Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    let schema = Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("orders", DataType::Int64, false),
    ]));
    // 2024-01-01 is day 19723 of the Unix epoch.
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Date32Array::from_iter_values(19_723..19_730)),
            Arc::new(Int64Array::from(vec![12, 15, 9, 22, 31, 18, 11])),
        ],
    )
    .map_err(DemoError::Orders)?;
    let file = std::fs::File::create(path).map_err(|source| DemoError::OrdersFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = ArrowWriter::try_new(file, schema, None).map_err(DemoError::Parquet)?;
    w.write(&batch).map_err(DemoError::Parquet)?;
    w.close().map_err(DemoError::Parquet)?;
    Ok(())
}
