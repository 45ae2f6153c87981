//! Assembles the Pingora server: one proxy service per listener, the admin listener and the
//! reload watcher, all sharing one [`Gateway`].

use std::path::PathBuf;
use std::sync::Arc;

use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use tracing::{info, warn};

use crate::admin::AdminService;
use crate::config::Config;
use crate::database::{self, Database};
use crate::gateway::Gateway;
use crate::health::HealthService;
use crate::history;
use crate::lifecycle::{self, Drain, Signals};
use crate::proxy::client_connection::ClientConnections;
use crate::proxy::TrinoProxy;
use crate::reload::Reloader;
use crate::resolver::Resolver;
use crate::snapshot::SnapshotHandle;
use crate::stickiness::Stickiness;
use crate::store::drift::{self, Difference};
use crate::sync::{redact, ConfigSource, StateSync, SyncService};
use crate::tls::ServerCert;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};

#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    /// Config file to re-read on SIGHUP (`None` for in-memory configs).
    pub file: Option<PathBuf>,
    /// Take over listening sockets from a running instance (Pingora's SIGQUIT upgrade).
    pub upgrade: bool,
    /// Who owns groups, backends and policies.
    pub source: ConfigSource,
}

/// Pingora's process settings from ours. pid file and upgrade socket default to paths derived from
/// the admin port, so several instances on one host don't fight over Pingora's `/tmp/pingora.pid`.
fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    let admin_port = config.admin.address.rsplit(':').next().unwrap_or("0");
    let mut conf = ServerConf {
        threads: s.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        // `server.grace_period` runs before Pingora hears of a SIGTERM, and the drain ends the
        // process itself once the requests in flight are done and the history is written
        // (`lifecycle`); Pingora's own timers are only the fallback, past both.
        grace_period_seconds: Some(
            (s.graceful_shutdown_timeout.get() + lifecycle::HISTORY_FLUSH).as_secs() + 2,
        ),
        graceful_shutdown_timeout_seconds: Some(1),
        // A successor asks for the sockets after its first health pass; the old process may get
        // its SIGQUIT before or after that (one retry per second).
        upgrade_sock_connect_accept_max_retries: Some(lifecycle::UPGRADE_WAIT.as_secs() as usize),
        ..ServerConf::default()
    };
    let tmp = std::env::temp_dir();
    conf.pid_file = s.pid_file.clone().unwrap_or_else(|| {
        tmp.join(format!("trino-edge-{admin_port}.pid"))
            .display()
            .to_string()
    });
    conf.upgrade_sock = s.upgrade_sock.clone().unwrap_or_else(|| {
        tmp.join(format!("trino-edge-{admin_port}.sock"))
            .display()
            .to_string()
    });
    conf
}

/// Socket read buffer per TLS client connection, below the TLS layer. Pingora's default is
/// 64 KiB, which idle keep-alive connections hold too (10,000 of them cost ~850 MiB). Plain-text
/// listeners need none: the HTTP layer reads into its own header and body buffers, so a socket
/// buffer would only add a copy.
const TLS_READ_BUFFER: usize = 4096;

/// How this instance names itself in query history: host name and admin port.
fn instance_name(config: &Config) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "trino-edge".to_string());
    let port = config.admin.address.rsplit(':').next().unwrap_or("0");
    format!("{host}:{port}")
}

/// Database mode: the database's groups, backends and policies route, so say where the file's
/// (ignored) ones differ: one warning per difference and one with the advice; or one info line
/// when they agree.
fn log_drift(config: &Config, version: i64, drift: &[Difference]) {
    let database = redact(&config.database.url);
    if drift.is_empty() {
        info!(%database, version, "routing config loaded from the database (the file's agrees)");
        return;
    }
    for d in drift {
        warn!(
            "the file's routing config differs from the database's: {d} (admin API: {})",
            d.admin_request()
        );
    }
    warn!(
        %database,
        version,
        "{} difference(s) between the file and the database: routing uses the database's; {}",
        drift.len(),
        drift::HOW_TO_APPLY
    );
}

/// Build everything and run until a shutdown signal. Errors are startup problems (ports taken).
pub fn serve(config: Config, opts: ServeOptions) -> Result<(), String> {
    // The database holds history and coordinator ids in both modes, and in database mode also
    // the routing config (seeded from the file once).
    let rt = database::runtime()?;
    let opened = rt.block_on(StateSync::open(&config, opts.source))?;
    if opts.source == ConfigSource::Database {
        log_drift(&config, opened.version, &opened.drift);
    }
    let (store, routing_config, version) = (opened.store, opened.config, opened.version);
    let snapshots = SnapshotHandle::new(&routing_config).map_err(|e| e.to_string())?;
    let database = Database::new(store, rt.clone());
    let sync = StateSync::new(
        opts.source,
        database.clone(),
        snapshots.clone(),
        config.clone(),
        version,
    );
    let (history, history_writer, history_stop) = history::channel(database.clone());
    let gateway = Arc::new(Gateway::new(
        snapshots.clone(),
        Stickiness::new(config.proxy.sticky_capacity, config.proxy.sticky_ttl.get()),
        Some(history),
        Some(database),
        instance_name(&config),
    ));
    let health = HealthService::new(gateway.clone());

    // Report taken ports clearly before Pingora takes over (it would only panic in a thread).
    if !opts.upgrade {
        for l in &config.proxy.listeners {
            std::net::TcpListener::bind(&l.address).map_err(|e| {
                format!(
                    "cannot listen on {} (listener `{}`): {e}",
                    l.address, l.name
                )
            })?;
        }
    }
    // Certificates, kept for SIGHUP to re-read.
    let mut certs = Vec::new();
    let admin_cert = match &config.admin.tls {
        Some(files) => {
            let c = ServerCert::load(files).map_err(|e| format!("admin.tls: {e}"))?;
            certs.push(c.clone());
            Some(c)
        }
        None => None,
    };
    if !opts.upgrade {
        crate::admin::port_is_free(&config.admin.address)
            .map_err(|e| format!("cannot listen on {} (admin): {e}", config.admin.address))?;
    }
    // The router starts loading the hybrid endpoint's local tables at once (so a broken file
    // shows at start): on the database runtime, the one running before Pingora's.
    let admin = {
        let _runtime = rt.enter();
        AdminService::new(gateway.clone(), sync.clone(), admin_cert.clone())?
    };

    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let conf = server_conf(&config);
    let upgrade_sock = conf.upgrade_sock.clone();
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);

    // The proxy listeners open only once the first health pass has decided every backend and
    // host names are resolved: no client sees a 503 because the gateway has not looked yet.
    // After `--upgrade`, the sockets are asked for (by the bootstrap) only then too, so the old
    // process serves until this one is ready; and every listener waits for them.
    let health = server.add_service(background_service("health checks", health));
    let resolver = server.add_service(background_service(
        "resolver",
        Resolver {
            snapshots: snapshots.clone(),
        },
    ));
    let bootstrap = server.bootstrap_as_a_service();
    if opts.upgrade {
        bootstrap.add_dependencies([&health, &resolver]);
    }
    for (index, l) in config.proxy.listeners.iter().enumerate() {
        let proxy = TrinoProxy {
            listener: l.name.as_str().into(),
            listener_index: index,
            tls: l.tls.is_some(),
            gateway: gateway.clone(),
        };
        let mut app = pingora_proxy::HttpProxy::new(proxy, server.configuration.clone());
        app.handle_init_modules();
        let mut service = pingora_core::services::listening::Service::new(
            format!("proxy {}", l.name),
            ClientConnections::new(app, snapshots.clone(), gateway.lifecycle.clone()),
        );
        let read_buffer = if l.tls.is_some() { TLS_READ_BUFFER } else { 0 };
        let endpoint = ListenerConfig::tcp(l.address.as_str()).l4_buffer(L4BufferSettings::new(
            read_buffer,
            DEFAULT_L4_WRITE_BUFFER_SIZE,
        ));
        match &l.tls {
            Some(files) => {
                let cert = ServerCert::load(files)
                    .map_err(|e| format!("listener `{}` TLS: {e}", l.name))?;
                service.add_listener(endpoint.tls(cert.listener_settings()?));
                certs.push(cert);
                info!(listener = %l.name, "proxy listener on https://{}", l.address);
            }
            None => {
                service.add_listener(endpoint);
                info!(listener = %l.name, "proxy listener on http://{}", l.address);
            }
        }
        let handle = server.add_service(service);
        handle.add_dependencies([&health, &resolver, &bootstrap]);
    }
    let mut admin = pingora_core::services::listening::Service::new("admin".to_string(), admin);
    let read_buffer = if admin_cert.is_some() {
        TLS_READ_BUFFER
    } else {
        0
    };
    admin.add_listener(
        ListenerConfig::tcp(config.admin.address.as_str()).l4_buffer(L4BufferSettings::new(
            read_buffer,
            DEFAULT_L4_WRITE_BUFFER_SIZE,
        )),
    );
    admin.threads = Some(1);
    let scheme = if admin_cert.is_some() {
        "https"
    } else {
        "http"
    };
    info!("admin listener on {scheme}://{}", config.admin.address);
    server.add_service(admin).add_dependencies([&bootstrap]);
    server.add_service(background_service(
        "config sync",
        SyncService {
            sync: sync.clone(),
            gateway: gateway.clone(),
        },
    ));
    server.add_service(background_service("history writer", history_writer));
    server.add_service(background_service(
        "queue dispatcher",
        crate::queue::Dispatcher {
            queue: gateway.queue.clone(),
            snapshots: snapshots.clone(),
            lifecycle: gateway.lifecycle.clone(),
        },
    ));
    server.add_service(background_service(
        "drain",
        Drain {
            lifecycle: gateway.lifecycle.clone(),
            history: history_stop,
            timeout: config.server.graceful_shutdown_timeout.get(),
        },
    ));
    server.add_service(background_service(
        "config reload",
        Reloader {
            file: opts.file,
            snapshots: snapshots.clone(),
            started_with: config.clone(),
            sync: (opts.source == ConfigSource::Database).then_some(sync),
            certs,
        },
    ));
    info!(
        "routing table (snapshot {}):\n{}",
        snapshots.load().version,
        snapshots.load().describe()
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            lifecycle: gateway.lifecycle.clone(),
            grace_period: config.server.grace_period.get(),
            upgrade_sock,
        }),
    });
    Ok(())
}
