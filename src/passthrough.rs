//! A bare Pingora reverse proxy — no routing, stickiness, metrics or logging — used only as the
//! benchmark baseline (`trino-edge passthrough`): the gap between it and `serve` is what our
//! logic costs, the gap between it and nginx is Pingora's.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// Serve until killed.
pub fn run(listen: SocketAddr, upstream: SocketAddr, threads: usize) -> Result<(), String> {
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: std::env::temp_dir()
            .join(format!("trino-edge-passthrough-{}.pid", listen.port()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("trino-edge-passthrough-{}.sock", listen.port()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();
    let mut service =
        pingora_proxy::http_proxy_service(&server.configuration, Passthrough { upstream });
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever()
}
