//! Cross-reference and value checks on a parsed [`Config`]; every problem is reported with its key path.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{AdminAuthConfig, Config, ConfigIssue, HybridConfig};

/// Names become metric label values and URL path segments, so keep them to a safe alphabet.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check_name(&mut self, path: String, name: &str, seen: &mut HashSet<String>, what: &str) {
        if !valid_name(name) {
            self.push(
                path,
                format!("{what} name `{name}` must be 1-64 characters of letters, digits, `-`, `_`, `.`"),
            );
        } else if !seen.insert(name.to_string()) {
            self.push(path, format!("duplicate {what} name `{name}`"));
        }
    }
}

/// Parse and check a backend URL: `http(s)://host[:port]` with no path, query or credentials.
pub fn check_backend_url(raw: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a valid URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!(
            "`{raw}` must use http or https, not `{}`",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if u.path() != "/" && !u.path().is_empty() {
        return Err(format!("`{raw}` must not have a path (`{}`)", u.path()));
    }
    if u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(format!(
            "`{raw}` must not carry a query, fragment or credentials"
        ));
    }
    Ok(u)
}

/// Signature algorithms an admin JWT may use: asymmetric only, so a leaked JWKS (public keys)
/// can never mint tokens, and `none` is not even a name we know.
pub const JWT_ALGORITHMS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];

fn check_hybrid(is: &mut Issues, h: &HybridConfig) {
    for name in h.tables.keys() {
        if let Err(e) = crate::hybrid::guard::check_alias(name) {
            is.push(
                format!("hybrid.tables.{name}"),
                e.replace("alias", "table name"),
            );
        } else if name.to_ascii_lowercase() != *name {
            // DataFusion folds unquoted identifiers to lower case: `Orders` could never be named.
            is.push(
                format!("hybrid.tables.{name}"),
                "table names must be lower case",
            );
        }
    }
    for (field, v) in [
        ("max_registration_rows", h.max_registration_rows),
        ("max_memory_mb", h.max_memory_mb),
        ("max_result_rows", h.max_result_rows),
        ("timeout_seconds", h.timeout_seconds),
    ] {
        if v == 0 {
            is.push(format!("hybrid.{field}"), "must be at least 1");
        }
    }
    if h.max_memory_mb > 1 << 20 {
        is.push("hybrid.max_memory_mb", "at most 1048576 (1 TiB)");
    }
    if h.timeout_seconds > 86_400 {
        is.push("hybrid.timeout_seconds", "at most 86400 (a day)");
    }
    if h.threads == Some(0) {
        is.push("hybrid.threads", "must be at least 1");
    }
    if h.default_user.trim().is_empty() {
        is.push("hybrid.default_user", "must not be empty");
    }
}

fn check_admin_auth(is: &mut Issues, auth: &AdminAuthConfig) {
    if auth.tokens.is_empty() && auth.jwt.is_none() {
        is.push(
            "admin.auth",
            "configure `tokens`, `jwt` or both (an empty auth section would lock everyone out)",
        );
    }
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, t) in auth.tokens.iter().enumerate() {
        is.check_name(
            format!("admin.auth.tokens[{i}].name"),
            &t.name,
            &mut names,
            "token",
        );
        let h = t.sha256.to_ascii_lowercase();
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            is.push(
                format!("admin.auth.tokens[{i}].sha256"),
                "must be the 64 hex digits of the token's SHA-256 (`printf %s TOKEN | sha256sum`), \
                 never the token itself",
            );
        } else if !hashes.insert(h) {
            is.push(
                format!("admin.auth.tokens[{i}].sha256"),
                "the same token is configured twice",
            );
        }
    }
    if let Some(j) = &auth.jwt {
        match (&j.jwks_url, &j.jwks_file) {
            (Some(_), Some(_)) | (None, None) => is.push(
                "admin.auth.jwt",
                "set exactly one of `jwks_url` and `jwks_file`",
            ),
            (Some(u), None) => match url::Url::parse(u) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                _ => is.push(
                    "admin.auth.jwt.jwks_url",
                    format!("`{u}` must be an http(s) URL"),
                ),
            },
            (None, Some(_)) => {}
        }
        if j.algorithms.is_empty() {
            is.push("admin.auth.jwt.algorithms", "list at least one algorithm");
        }
        for (i, a) in j.algorithms.iter().enumerate() {
            if !JWT_ALGORITHMS.contains(&a.as_str()) {
                is.push(
                    format!("admin.auth.jwt.algorithms[{i}]"),
                    format!(
                        "`{a}` is not accepted; use asymmetric algorithms only: {}",
                        JWT_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if j.issuer.is_empty() {
            is.push("admin.auth.jwt.issuer", "must not be empty");
        }
        if j.audience.is_empty() {
            is.push("admin.auth.jwt.audience", "must not be empty");
        }
        if j.roles.is_empty() {
            is.push(
                "admin.auth.jwt.roles",
                "map at least one group to a role (e.g. `trino-edge-admin: admin`)",
            );
        }
        if let Some(c) = &j.console_login {
            let at = "admin.auth.jwt.console_login";
            if c.client_id.trim().is_empty() {
                is.push(format!("{at}.client_id"), "must not be empty");
            }
            for (key, u) in [
                ("authorization_endpoint", &c.authorization_endpoint),
                ("token_endpoint", &c.token_endpoint),
            ] {
                match url::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "https" | "http") && p.host().is_some() => {}
                    _ => is.push(
                        format!("{at}.{key}"),
                        format!("`{u}` must be an absolute http(s) URL"),
                    ),
                }
            }
            if c.scopes
                .iter()
                .any(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                is.push(
                    format!("{at}.scopes"),
                    "scopes are single words (e.g. `openid`)",
                );
            }
        }
    }
}

/// The files a config names (certificates, keys, CA bundles) exist, parse and belong together.
/// Kept out of [`validate`], which also runs on every admin API change and database poll: files
/// are read when the config file is loaded (`serve`, `check-config`, SIGHUP), not on each of those.
pub fn check_files(c: &Config) -> Result<(), Vec<ConfigIssue>> {
    let mut is = Issues(Vec::new());
    for (i, l) in c.proxy.listeners.iter().enumerate() {
        if let Some(t) = &l.tls {
            if let Err(e) = crate::tls::load_pair(&t.cert, &t.key) {
                is.push(format!("proxy.listeners[{i}].tls"), e);
            }
        }
    }
    if let Some(t) = &c.admin.tls {
        if let Err(e) = crate::tls::load_pair(&t.cert, &t.key) {
            is.push("admin.tls", e);
        }
    }
    if let Err(e) = crate::tls::UpstreamTls::load(c.proxy.backend_tls.as_ref()) {
        is.push("proxy.backend_tls", e);
    }
    for (name, location) in &c.hybrid.tables {
        if let Err(e) = crate::hybrid::tables::check_location(location) {
            is.push(format!("hybrid.tables.{name}"), e);
        }
    }
    if is.0.is_empty() {
        Ok(())
    } else {
        Err(is.0)
    }
}

/// Where a `queue:` block is written: some of its keys belong to one side only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QueueOwner {
    Group,
    Policy,
}

/// A `queue:` block: keys on the side they belong to, limits and durations above zero.
fn check_queue(is: &mut Issues, at: &str, q: &crate::config::QueueConfig, owner: QueueOwner) {
    if owner == QueueOwner::Policy {
        for (key, set) in [
            ("max_queued", q.max_queued.is_some()),
            ("max_queue_time", q.max_queue_time.is_some()),
            ("client_timeout", q.client_timeout.is_some()),
        ] {
            if set {
                is.push(
                    format!("{at}.{key}"),
                    "is a setting of the group's queue: set it on the group",
                );
            }
        }
    } else if q.priority.is_some() {
        is.push(
            format!("{at}.priority"),
            "a queue priority is given by a policy: set it in the policy's `queue`",
        );
    }
    for (key, d) in [
        ("max_queue_time", q.max_queue_time),
        ("client_timeout", q.client_timeout),
    ] {
        if d.is_some_and(|d| d.get().is_zero()) {
            is.push(format!("{at}.{key}"), "must be longer than 0");
        }
    }
    for (key, n) in [
        ("max_running_per_user", q.max_running_per_user),
        ("max_running_per_source", q.max_running_per_source),
    ] {
        if n == Some(0) {
            is.push(
                format!("{at}.{key}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
}

/// A backend's groups: at least one, each defined, none twice. A single group is reported at
/// `backends[i].group` (how it is written back), several at `backends[i].groups[j]`.
fn check_backend_groups(is: &mut Issues, i: usize, names: &[String], defined: &HashSet<String>) {
    if names.is_empty() {
        is.push(format!("backends[{i}]"), "give either group or groups");
    }
    let mut seen = HashSet::new();
    for (j, g) in names.iter().enumerate() {
        let at = if names.len() == 1 {
            format!("backends[{i}].group")
        } else {
            format!("backends[{i}].groups[{j}]")
        };
        if !seen.insert(g.as_str()) {
            is.push(at, format!("group `{g}` is listed twice"));
        } else if !defined.contains(g) {
            is.push(at, format!("group `{g}` is not defined in `groups`"));
        }
    }
}

/// Whether a connection to `target` would reach a socket bound to `listener`: same port, and the
/// same address, or `listener` bound to every address and `target` one of this host's (loopback,
/// unspecified, or an address this host can bind).
pub fn reaches_listener(listener: SocketAddr, target: SocketAddr) -> bool {
    if listener.port() != target.port() {
        return false;
    }
    let ip = target.ip();
    if listener.ip() == ip {
        return true;
    }
    listener.ip().is_unspecified()
        && (ip.is_loopback()
            || ip.is_unspecified()
            || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
}

/// The gateway's own listener (proxy or admin) that `target` reaches, if any: a backend there
/// would send every request back into the gateway.
pub fn own_listener(c: &Config, target: SocketAddr) -> Option<SocketAddr> {
    c.proxy
        .listeners
        .iter()
        .map(|l| l.address.as_str())
        .chain(std::iter::once(c.admin.address.as_str()))
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .find(|&l| reaches_listener(l, target))
}

/// The addresses a backend URL names without a DNS lookup (an IP literal, or `localhost`);
/// host names are checked when resolved (`Snapshot::resolve_host_names`).
fn literal_addresses(u: &url::Url) -> Vec<SocketAddr> {
    let Some(port) = u.port_or_known_default() else {
        return Vec::new();
    };
    match u.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => vec![
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), port),
        ],
        _ => Vec::new(),
    }
}

pub fn validate(c: &Config) -> Result<(), Vec<ConfigIssue>> {
    let mut is = Issues(Vec::new());

    // Listeners.
    if c.proxy.listeners.is_empty() {
        is.push("proxy.listeners", "at least one listener is required");
    }
    let mut listener_names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in c.proxy.listeners.iter().enumerate() {
        is.check_name(
            format!("proxy.listeners[{i}].name"),
            &l.name,
            &mut listener_names,
            "listener",
        );
        match l.address.parse::<SocketAddr>() {
            Ok(a) => {
                if !addresses.insert(a) {
                    is.push(
                        format!("proxy.listeners[{i}].address"),
                        format!("address {a} is used twice"),
                    );
                }
            }
            Err(_) => is.push(
                format!("proxy.listeners[{i}].address"),
                format!(
                    "`{}` is not an IP:port address (e.g. 127.0.0.1:8080)",
                    l.address
                ),
            ),
        }
    }
    match c.admin.address.parse::<SocketAddr>() {
        Ok(a) if addresses.contains(&a) => is.push(
            "admin.address",
            format!("address {a} is also a proxy listener"),
        ),
        // The admin API drains clusters: off loopback, nobody may reach it anonymously.
        Ok(a) if !a.ip().is_loopback() && c.admin.auth.is_none() => is.push(
            "admin.address",
            format!(
                "{a} is not a loopback address and admin.auth is not configured: anyone who \
                 reaches it could change routing. Configure admin.auth (tokens or jwt) or bind \
                 to 127.0.0.1"
            ),
        ),
        Ok(_) => {}
        Err(_) => is.push(
            "admin.address",
            format!(
                "`{}` is not an IP:port address (e.g. 127.0.0.1:8090)",
                c.admin.address
            ),
        ),
    }
    if let Some(auth) = &c.admin.auth {
        check_admin_auth(&mut is, auth);
    }
    if c.admin.header_timeout.get() < std::time::Duration::from_millis(100) {
        is.push("admin.header_timeout", "must be at least 100ms");
    }
    if c.admin.idle_timeout.get() < std::time::Duration::from_millis(100) {
        is.push("admin.idle_timeout", "must be at least 100ms");
    }
    if c.admin.max_connections == 0 {
        is.push("admin.max_connections", "must be at least 1");
    }
    check_hybrid(&mut is, &c.hybrid);
    for (i, l) in c.proxy.listeners.iter().enumerate() {
        if let Some(h) = &l.user_from_header {
            let lower = h.to_ascii_lowercase();
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                is.push(
                    format!("proxy.listeners[{i}].user_from_header"),
                    format!("`{h}` is not a valid header name"),
                );
            } else if lower == "x-trino-user" || lower == "x-presto-user" {
                is.push(
                    format!("proxy.listeners[{i}].user_from_header"),
                    "must name the front proxy's header, not X-Trino-User itself",
                );
            }
        }
    }
    if let Some(ext) = &c.proxy.external_url {
        match url::Url::parse(ext) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
            _ => is.push(
                "proxy.external_url",
                format!(
                    "`{ext}` must be an absolute http(s) URL such as https://trino.example.com"
                ),
            ),
        }
    }
    if let Some(adv) = &c.proxy.advertise_url {
        match url::Url::parse(adv) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none() => {}
            _ => is.push(
                "proxy.advertise_url",
                format!(
                    "`{adv}` must be this instance's proxy listener as an http(s) URL without a \
                     path, such as http://10.0.0.5:8080"
                ),
            ),
        }
    }
    if c.proxy.sticky_capacity == 0 {
        is.push("proxy.sticky_capacity", "must be at least 1");
    }
    if c.server.threads == Some(0) {
        is.push("server.threads", "must be at least 1");
    }
    for (key, path) in [
        ("server.pid_file", &c.server.pid_file),
        ("server.upgrade_sock", &c.server.upgrade_sock),
    ] {
        if let Some(p) = path {
            if !p.starts_with('/') {
                is.push(key, format!("`{p}` must be an absolute path"));
            }
        }
    }

    let db = &c.database.url;
    if ![
        "sqlite:",
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
    ]
    .iter()
    .any(|p| db.starts_with(p))
    {
        is.push(
            "database.url",
            format!("`{db}` must start with sqlite://, postgres://, postgresql://, mysql:// or mariadb://"),
        );
    }
    if c.database.poll_interval.get().is_zero() {
        is.push("database.poll_interval", "must be longer than 0s");
    }
    let h = &c.health;
    if h.rise == 0 || h.fall == 0 {
        is.push("health", "rise and fall must be at least 1");
    }
    if h.enabled && h.interval.get().is_zero() {
        is.push("health.interval", "must be longer than 0s");
    }
    if h.enabled && h.timeout.get().is_zero() {
        is.push("health.timeout", "must be longer than 0s");
    }
    if h.user.trim().is_empty() {
        is.push("health.user", "must not be empty");
    }
    if c.proxy.header_timeout.get() < std::time::Duration::from_millis(100) {
        is.push("proxy.header_timeout", "must be at least 100ms");
    }
    if c.proxy.client_idle_timeout.get() < std::time::Duration::from_secs(1) {
        is.push("proxy.client_idle_timeout", "must be at least 1s");
    }
    if c.proxy.max_submit_attempts == 0 {
        is.push("proxy.max_submit_attempts", "must be at least 1");
    }

    // Groups.
    let mut groups = HashSet::new();
    if c.groups.is_empty() {
        is.push("groups", "at least one group is required");
    }
    for (i, g) in c.groups.iter().enumerate() {
        is.check_name(format!("groups[{i}].name"), &g.name, &mut groups, "group");
        if g.hash_key.is_some() && g.strategy != crate::config::Strategy::Consistent {
            is.push(
                format!("groups[{i}].hash_key"),
                format!(
                    "only strategy `consistent` hashes a key (this group's strategy is `{}`)",
                    g.strategy.as_str()
                ),
            );
        }
        if let Some(q) = &g.queue {
            check_queue(&mut is, &format!("groups[{i}].queue"), q, QueueOwner::Group);
        }
    }
    if !groups.contains(&c.routing.default_group) {
        is.push(
            "routing.default_group",
            format!(
                "group `{}` is not defined in `groups`",
                c.routing.default_group
            ),
        );
    }

    // Backends.
    let mut backends = HashSet::new();
    for (i, b) in c.backends.iter().enumerate() {
        is.check_name(
            format!("backends[{i}].name"),
            &b.name,
            &mut backends,
            "backend",
        );
        check_backend_groups(&mut is, i, b.groups(), &groups);
        match check_backend_url(&b.url) {
            Err(e) => is.push(format!("backends[{i}].url"), e),
            Ok(u) => {
                if let Some(l) = literal_addresses(&u)
                    .into_iter()
                    .find_map(|a| own_listener(c, a))
                {
                    is.push(
                        format!("backends[{i}].url"),
                        format!(
                            "`{}` is this gateway's own listener {l}: every request would loop \
                             back into the gateway",
                            b.url
                        ),
                    );
                }
            }
        }
        if b.max_queued_queries == Some(0) || b.max_running_queries == Some(0) {
            is.push(
                format!("backends[{i}]"),
                "max_queued_queries and max_running_queries must be at least 1",
            );
        }
        if b.weight == 0 {
            is.push(
                format!("backends[{i}].weight"),
                "must be at least 1 (disable the backend instead)",
            );
        }
    }

    // Policies.
    let mut policies = HashSet::new();
    for (i, p) in c.routing.policies.iter().enumerate() {
        let at = format!("routing.policies[{i}]");
        is.check_name(format!("{at}.name"), &p.name, &mut policies, "policy");
        if !groups.contains(&p.group) {
            is.push(
                format!("{at}.group"),
                format!("group `{}` is not defined in `groups`", p.group),
            );
        }
        if let Some(fb) = &p.fallback_group {
            if !groups.contains(fb) {
                is.push(
                    format!("{at}.fallback_group"),
                    format!("group `{fb}` is not defined in `groups`"),
                );
            }
        }
        if let Some(q) = &p.queue {
            check_queue(&mut is, &format!("{at}.queue"), q, QueueOwner::Policy);
        }
        let m = &p.match_;
        if let Some(l) = &m.listener {
            if !listener_names.contains(l) {
                is.push(
                    format!("{at}.match.listener"),
                    format!("listener `{l}` is not defined in `proxy.listeners`"),
                );
            }
        }
        for (key, re) in [("source", &m.source), ("user", &m.user)] {
            if let Some(re) = re {
                if let Err(e) = super::compile_pattern(re) {
                    is.push(format!("{at}.match.{key}"), format!("invalid regex: {e}"));
                }
            }
        }
        for name in m.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                is.push(
                    format!("{at}.match.headers.{name}"),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        for (key, patterns) in [
            ("catalogs_any", &m.catalogs_any),
            ("catalogs_all", &m.catalogs_all),
            ("schemas_any", &m.schemas_any),
            ("tables_any", &m.tables_any),
        ] {
            if patterns
                .iter()
                .any(|t| t.trim().is_empty() || t.chars().any(char::is_whitespace))
            {
                is.push(
                    format!("{at}.match.{key}"),
                    "patterns must be non-empty and contain no spaces (`*` matches any characters)",
                );
            }
        }
        for (key, tags) in [
            ("client_tags_all", &m.client_tags_all),
            ("client_tags_any", &m.client_tags_any),
        ] {
            if tags.iter().any(|t| t.trim().is_empty() || t.contains(',')) {
                is.push(
                    format!("{at}.match.{key}"),
                    "tags must be non-empty and must not contain `,`",
                );
            }
        }
        if let Some(h) = &m.host {
            if h.is_empty() || h.contains(':') || h.contains('/') {
                is.push(
                    format!("{at}.match.host"),
                    format!("`{h}` must be a host name without port"),
                );
            }
        }
    }

    if is.0.is_empty() {
        Ok(())
    } else {
        Err(is.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn base(extra_policy: &str, backends: &str) -> String {
        format!(
            r#"
proxy:
  listeners: [{{ name: main, address: "127.0.0.1:8080" }}]
admin: {{ address: "127.0.0.1:8090" }}
routing:
  default_group: adhoc
  policies:
{extra_policy}
groups:
  - {{ name: adhoc, strategy: round_robin }}
backends:
{backends}
"#
        )
    }

    fn err(text: &str) -> String {
        parse_str("c.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn reports_each_cross_reference_with_its_path() {
        let text = base(
            "    - { name: p, match: { listener: other, source: \"(\" }, group: nope }",
            "  - { name: b, url: \"ftp://x\", group: ghost }\n  - { name: b, url: \"http://h:1/path\", group: adhoc }",
        );
        let msg = err(&text);
        for needle in [
            "c.yaml: routing.policies[0].group: group `nope` is not defined",
            "c.yaml: routing.policies[0].match.listener: listener `other` is not defined",
            "c.yaml: routing.policies[0].match.source: invalid regex",
            "c.yaml: backends[0].group: group `ghost` is not defined",
            "c.yaml: backends[0].url: `ftp://x` must use http or https",
            "c.yaml: backends[1].name: duplicate backend name `b`",
            "c.yaml: backends[1].url: `http://h:1/path` must not have a path",
        ] {
            assert!(msg.contains(needle), "missing `{needle}` in:\n{msg}");
        }
    }

    #[test]
    fn each_group_of_a_backend_must_exist_once() {
        let text = base(
            "    []",
            "  - { name: a, url: \"http://h:1\", groups: [adhoc, ghost, adhoc] }\n  \
             - { name: b, url: \"http://h:2\", groups: [phantom] }\n  \
             - { name: c, url: \"http://h:3\", groups: [adhoc, etl] }",
        )
        .replace("  policies:\n    []", "  policies: []")
        .replace(
            "  - { name: adhoc, strategy: round_robin }",
            "  - { name: adhoc, strategy: round_robin }\n  - { name: etl }",
        );
        let msg = err(&text);
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(
            lines,
            [
                "c.yaml: backends[0].groups[1]: group `ghost` is not defined in `groups`",
                "c.yaml: backends[0].groups[2]: group `adhoc` is listed twice",
                "c.yaml: backends[1].group: group `phantom` is not defined in `groups`",
            ]
        );
    }

    #[test]
    fn a_backend_built_without_groups_is_refused() {
        let text = base(
            "    []",
            "  - { name: b, url: \"https://trino.example.com\", group: adhoc }",
        )
        .replace("  policies:\n    []", "  policies: []");
        let mut c = parse_str("c.yaml", &text).expect("valid");
        c.backends[0].groups.clear();
        let issues = super::validate(&c).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "backends[0]");
        assert_eq!(issues[0].message, "give either group or groups");
    }

    #[test]
    fn accepts_a_minimal_valid_file() {
        let text = base(
            "    []",
            "  - { name: b, url: \"https://trino.example.com\", group: adhoc }",
        )
        .replace("  policies:\n    []", "  policies: []");
        parse_str("c.yaml", &text).expect("valid");
    }

    #[test]
    fn admin_listener_limits_have_defaults_and_floors() {
        let text = base(
            "    []",
            "  - { name: b, url: \"https://trino.example.com\", group: adhoc }",
        )
        .replace("  policies:\n    []", "  policies: []");
        let c = parse_str("c.yaml", &text).expect("valid");
        assert_eq!(c.admin.header_timeout.get().as_secs(), 10);
        assert_eq!(c.admin.idle_timeout.get().as_secs(), 60);
        assert_eq!(c.admin.max_connections, 256);
        let msg = err(&text.replace(
            "address: \"127.0.0.1:8090\"",
            "address: \"127.0.0.1:8090\", header_timeout: 50ms, idle_timeout: 0s, max_connections: 0",
        ));
        for needle in [
            "c.yaml: admin.header_timeout: must be at least 100ms",
            "c.yaml: admin.idle_timeout: must be at least 100ms",
            "c.yaml: admin.max_connections: must be at least 1",
        ] {
            assert!(msg.contains(needle), "missing `{needle}` in:\n{msg}");
        }
    }
}
