//! The YAML configuration file: parsing (serde), then validation with precise error messages.
//!
//! Three visible steps, as in `memorysafety/river`: [`load`] parses the file into the plain structs of
//! [`model`], [`validate`](validate::validate) checks every cross reference and pattern, and
//! [`crate::snapshot::Snapshot::compile`] turns the validated config into the immutable routing table
//! the request path reads.

pub mod duration;
pub mod model;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// One problem found in a configuration file: where it is (file and key path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `routing.policies[0].match.source`; empty for whole-file problems.
    pub path: String,
    pub message: String,
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if issue.path.is_empty() {
                write!(f, "{}: {}", self.file, issue.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file, issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn single(
        file: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            issues: vec![ConfigIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// A parsed and validated configuration, with the file it came from (for reloads and messages).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub file: PathBuf,
    pub config: Config,
}

/// Read, parse and validate a configuration file.
/// Largest compiled `match.user`/`match.source` pattern (the regex crate's `size_limit`):
/// ordinary patterns are a few KiB; one like `(a{100}){100}` is refused at load instead of
/// costing every submission time in proportion to its size.
pub const MAX_PATTERN_BYTES: usize = 256 * 1024;

/// A `match.user`/`match.source` pattern, compiled within [`MAX_PATTERN_BYTES`] (validation and
/// the routing snapshot use this one function).
pub fn compile_pattern(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
}

pub fn load(file: &Path) -> Result<LoadedConfig, ConfigError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::single(&name, "", format!("cannot read file: {e}")))?;
    let config = parse_str(&name, &text)?;
    validate::check_files(&config).map_err(|issues| ConfigError {
        file: name.clone(),
        issues,
    })?;
    Ok(LoadedConfig {
        file: file.to_path_buf(),
        config,
    })
}

/// Parse and validate configuration text; `file` is only used in messages.
///
/// Every problem is reported in one go, not just the first: serde stops at the first key it
/// cannot read, so each such key is taken out of the document (and noted) and the rest read
/// again, until it reads; then the cross-reference checks run on what was read. A value that is
/// missing because it was taken out is not reported again.
pub fn parse_str(file: &str, text: &str) -> Result<Config, ConfigError> {
    let fail = |issues| ConfigError {
        file: file.to_string(),
        issues,
    };
    // The first error comes from the text itself (its messages are the most precise).
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let first = match serde_path_to_error::deserialize::<_, Config>(de) {
        Ok(config) => return validate::validate(&config).map(|()| config).map_err(fail),
        Err(e) => e,
    };
    let mut issues = vec![issue(&first)];
    let Ok(mut doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Err(fail(issues)); // not even YAML
    };
    if doc.apply_merge().is_err() {
        return Err(fail(issues));
    }
    let mut taken = Taken::default();
    let mut path = segments(first.path());
    loop {
        if issues.len() >= MAX_ISSUES || !taken.take(&mut doc, &path) {
            return Err(fail(issues));
        }
        match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            Ok(config) => {
                if taken.shifted {
                    issues.push(ConfigIssue {
                        path: String::new(),
                        message: "cross-reference checks skipped until the problems above are \
                                  fixed"
                            .into(),
                    });
                } else if let Err(more) = validate::validate(&config) {
                    issues.extend(more);
                }
                return Err(fail(issues));
            }
            Err(e) => {
                path = taken.original(&segments(e.path()));
                let found = issue(&e);
                if !taken.explains(&path, &found.message) {
                    issues.push(ConfigIssue {
                        path: render(&path),
                        message: found.message,
                    });
                }
            }
        }
    }
}

/// Most problems listed for one file.
const MAX_ISSUES: usize = 100;

/// One serde error as an issue: the key path, and the message without serde_yaml_ng's own
/// (shorter) path prefix.
fn issue<E: fmt::Display>(e: &serde_path_to_error::Error<E>) -> ConfigIssue {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = e.inner().to_string();
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_string(),
        _ => message,
    };
    ConfigIssue { path, message }
}

/// A step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// A path as the issues write it: `backends[0].url`.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What was taken out of the document, in the file's own coordinates.
#[derive(Default)]
struct Taken {
    keys: Vec<Vec<Step>>,
    /// List entries taken out (list path, index): later entries moved up by one.
    entries: Vec<(Vec<Step>, usize)>,
    /// Some list entry was taken out, so paths the checks report would not match the file.
    shifted: bool,
}

impl Taken {
    /// Take the node at `path` (the file's coordinates) out of `doc`; false when there is none.
    fn take(&mut self, doc: &mut serde_yaml_ng::Value, path: &[Step]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let here = self.current(parent);
        let mut node = &mut *doc;
        for step in &here {
            node = match (step, node) {
                (Step::Key(k), serde_yaml_ng::Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                    Some(n) => n,
                    None => return false,
                },
                (Step::Index(i), serde_yaml_ng::Value::Sequence(s)) => match s.get_mut(*i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, node) {
            (Step::Key(k), serde_yaml_ng::Value::Mapping(m)) => {
                if m.remove(k.as_str()).is_none() {
                    return false;
                }
                self.keys.push(path.to_vec());
            }
            (Step::Index(i), serde_yaml_ng::Value::Sequence(s)) => {
                let at = self.current_index(parent, *i);
                if at >= s.len() {
                    return false;
                }
                s.remove(at);
                self.entries.push((parent.to_vec(), *i));
                self.shifted = true;
            }
            _ => return false,
        }
        true
    }

    /// A path of the document as it is now, in the file's coordinates.
    fn original(&self, path: &[Step]) -> Vec<Step> {
        let mut out: Vec<Step> = Vec::with_capacity(path.len());
        for step in path {
            let step = match step {
                Step::Index(i) => {
                    let mut gone: Vec<usize> = self
                        .entries
                        .iter()
                        .filter(|(list, _)| *list == out)
                        .map(|(_, j)| *j)
                        .collect();
                    gone.sort_unstable();
                    let mut i = *i;
                    for g in gone {
                        if g <= i {
                            i += 1;
                        }
                    }
                    Step::Index(i)
                }
                Step::Key(k) => Step::Key(k.clone()),
            };
            out.push(step);
        }
        out
    }

    /// A path in the file's coordinates as the document is now.
    fn current(&self, path: &[Step]) -> Vec<Step> {
        let mut out = Vec::with_capacity(path.len());
        for (n, step) in path.iter().enumerate() {
            out.push(match step {
                Step::Index(i) => Step::Index(self.current_index(&path[..n], *i)),
                Step::Key(k) => Step::Key(k.clone()),
            });
        }
        out
    }

    fn current_index(&self, list: &[Step], i: usize) -> usize {
        let before = self
            .entries
            .iter()
            .filter(|(l, j)| l.as_slice() == list && *j < i)
            .count();
        i - before
    }

    /// Whether an error only repeats what was taken out: a field reported missing because it
    /// was removed for its bad value.
    fn explains(&self, path: &[Step], message: &str) -> bool {
        let Some(rest) = message.split("missing field `").nth(1) else {
            return false;
        };
        let Some(field) = rest.split('`').next() else {
            return false;
        };
        self.keys.iter().any(|k| {
            k.split_last()
                .is_some_and(|(last, parent)| parent == path && *last == Step::Key(field.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn oversized_patterns_are_refused() {
        assert!(super::compile_pattern("^svc_(etl|bi)[0-9]+$").is_ok());
        assert!(super::compile_pattern("(?i)^(dbt|airflow|superset|tableau).*").is_ok());
        let e = super::compile_pattern("(a{100}){100}").unwrap_err();
        assert!(e.to_string().contains("size limit"), "{e}");
    }

    use super::*;

    const GOOD: &str = r#"
proxy:
  listeners:
    - { name: main, address: "127.0.0.1:8080" }
admin:
  address: "127.0.0.1:8090"
routing:
  default_group: adhoc
  policies:
    - name: etl
      priority: 10
      match: { client_tags_all: [etl], source: "^airflow" }
      group: etl
groups:
  - { name: adhoc, strategy: round_robin }
  - { name: etl, strategy: random }
backends:
  - { name: trino-1, url: "http://127.0.0.1:18081", group: adhoc }
  - { name: trino-2, url: "http://127.0.0.1:18082", group: etl, enabled: false }
"#;

    #[test]
    fn parses_the_documented_example() {
        let c = parse_str("t.yaml", GOOD).expect("valid");
        assert_eq!(c.proxy.listeners[0].name, "main");
        assert!(c.routing.honor_routing_group_header);
        assert!(c.backends[0].enabled);
        assert!(!c.backends[1].enabled);
        assert_eq!(c.backends[0].weight, 1);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = GOOD.replace("source: \"^airflow\"", "sourc: \"^airflow\"");
        let err = parse_str("t.yaml", &text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("t.yaml: routing.policies[0].match.sourc: unknown field `sourc`"),
            "{msg}"
        );
    }

    #[test]
    fn queue_and_console_login_settings_are_checked_where_they_belong() {
        let text = GOOD
            .replace(
                "{ name: etl, strategy: random }",
                "{ name: etl, strategy: random, queue: { max_queued: 5, max_queue_time: 0s, priority: 3 } }",
            )
            .replace(
                "group: etl\n",
                "group: etl\n      queue: { priority: 2, max_queued: 9, max_running_per_user: 0 }\n",
            );
        let err = parse_str("t.yaml", &text).unwrap_err().to_string();
        for path in [
            "groups[1].queue.max_queue_time",
            "groups[1].queue.priority",
            "routing.policies[0].queue.max_queued",
            "routing.policies[0].queue.max_running_per_user",
        ] {
            assert!(err.contains(path), "{path} not named: {err}");
        }
        let good = GOOD.replace(
            "{ name: etl, strategy: random }",
            "{ name: etl, strategy: random, queue: { max_queued: 0, max_running_per_source: 3 } }",
        );
        let c = parse_str("t.yaml", &good).expect("valid");
        let q = c.groups[1].queue.unwrap_or_default();
        assert_eq!((q.max_queued(), q.max_running_per_source), (0, Some(3)));
        assert_eq!(QueueConfig::default().max_queued(), 1000);

        let auth = |login: &str| {
            GOOD.replace(
                "admin:\n  address: \"127.0.0.1:8090\"\n",
                &format!(
                    "admin:\n  address: \"127.0.0.1:8090\"\n  auth:\n    jwt:\n      issuer: i\n      \
                     audience: a\n      jwks_url: \"http://127.0.0.1:1/certs\"\n      \
                     roles: {{ g: admin }}\n      console_login: {login}\n"
                ),
            )
        };
        let ok = auth("{ client_id: c, authorization_endpoint: \"https://idp/auth\", token_endpoint: \"https://idp/token\" }");
        let c = parse_str("t.yaml", &ok).expect("valid");
        let login = c.admin.auth.unwrap().jwt.unwrap().console_login.unwrap();
        assert_eq!(login.scopes, ["openid"]);
        assert_eq!(login.token, ConsoleToken::AccessToken);
        let bad = auth("{ client_id: \" \", authorization_endpoint: \"/auth\", token_endpoint: \"ftp://idp/t\", scopes: [\"a b\"] }");
        let err = parse_str("t.yaml", &bad).unwrap_err().to_string();
        for key in [
            "client_id",
            "authorization_endpoint",
            "token_endpoint",
            "scopes",
        ] {
            assert!(
                err.contains(&format!("admin.auth.jwt.console_login.{key}")),
                "{key} not named: {err}"
            );
        }
    }

    fn backend_line(groups: &str) -> String {
        GOOD.replace(
            "{ name: trino-1, url: \"http://127.0.0.1:18081\", group: adhoc }",
            &format!("{{ name: trino-1, url: \"http://127.0.0.1:18081\", {groups} }}"),
        )
    }

    #[test]
    fn a_backend_takes_group_or_groups() {
        let c = parse_str("t.yaml", GOOD).expect("valid");
        assert_eq!(c.backends[0].groups(), ["adhoc"]);
        assert_eq!(c.backends[0].first_group(), "adhoc");

        let c = parse_str("t.yaml", &backend_line("groups: [adhoc, etl]")).expect("valid");
        assert_eq!(c.backends[0].groups, ["adhoc", "etl"]);
        let c = parse_str("t.yaml", &backend_line("groups: [etl]")).expect("valid");
        assert_eq!(c.backends[0].groups, ["etl"]);
    }

    #[test]
    fn one_group_is_written_as_group_several_as_groups() {
        let c = parse_str("t.yaml", &backend_line("groups: [adhoc, etl]")).expect("valid");
        let several = serde_json::to_value(&c.backends[0]).unwrap();
        assert_eq!(
            several,
            serde_json::json!({
                "name": "trino-1", "url": "http://127.0.0.1:18081", "groups": ["adhoc", "etl"],
                "enabled": true, "weight": 1, "rewrite_host": false,
                "max_queued_queries": null, "max_running_queries": null
            })
        );
        // What the database stored before `groups` existed is still written the same way, key
        // order included.
        let c = parse_str("t.yaml", &backend_line("groups: [adhoc]")).expect("valid");
        assert_eq!(
            serde_json::to_string(&c.backends[0]).unwrap(),
            r#"{"name":"trino-1","url":"http://127.0.0.1:18081","group":"adhoc","enabled":true,"weight":1,"rewrite_host":false,"max_queued_queries":null,"max_running_queries":null}"#
        );
        // And read back.
        let back: BackendConfig = serde_json::from_value(several).unwrap();
        assert_eq!(back.groups, ["adhoc", "etl"]);
        let yaml = serde_yaml_ng::to_string(&c.backends[0]).unwrap();
        assert!(yaml.contains("group: adhoc\n"), "{yaml}");
    }

    #[test]
    fn group_and_groups_together_or_neither_or_empty_is_an_error_with_its_path() {
        for (groups, expected) in [
            (
                "group: adhoc, groups: [etl]",
                "t.yaml: backends[0]: give either group or groups, not both",
            ),
            (
                "weight: 2",
                "t.yaml: backends[0]: give either group or groups (missing field `group`)",
            ),
            (
                "groups: []",
                "t.yaml: backends[0]: groups must list at least one group",
            ),
        ] {
            let msg = parse_str("t.yaml", &backend_line(groups))
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with(expected), "{groups}: {msg}");
        }
        // Unknown keys are still refused, with their path.
        let msg = parse_str("t.yaml", &backend_line("group: adhoc, grups: [etl]"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("t.yaml: backends[0].grups: unknown field `grups`"),
            "{msg}"
        );
        let msg = parse_str("t.yaml", &backend_line("groups: adhoc"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("t.yaml: backends[0].groups: "), "{msg}");
    }

    #[test]
    fn bad_strategy_is_rejected() {
        let text = GOOD.replace("strategy: random", "strategy: fastest");
        let msg = parse_str("t.yaml", &text).unwrap_err().to_string();
        assert!(msg.contains("groups[1].strategy"), "{msg}");
        assert!(msg.contains("unknown variant `fastest`"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_in_one_run() {
        // A bad duration used to hide the unknown key after it (and everything else).
        let text = GOOD
            .replace(
                "admin:\n  address: \"127.0.0.1:8090\"",
                "admin:\n  address: \"127.0.0.1:8090\"\n  idle_timeout: 5 parsecs\n  max_conections: 10",
            )
            .replace("strategy: random", "strategy: fastest")
            .replace("group: etl, enabled: false", "group: etl, enabled: maybe, colour: red")
            .replace("group: etl\ngroups:", "group: nowhere\ngroups:");
        let err = parse_str("t.yaml", &text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "admin.idle_timeout",
                "admin.max_conections",
                "groups[1].strategy",
                "backends[1].enabled",
                "backends[1].colour",
                "routing.policies[0].group",
            ],
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("unknown field `max_conections`"), "{msg}");
        assert!(msg.contains("unknown variant `fastest`"), "{msg}");
        assert!(msg.contains("nowhere"), "{msg}");
    }

    #[test]
    fn a_list_entry_taken_out_keeps_the_paths_of_the_others() {
        // The first listener lacks its (required) name: it is taken out whole, and the second
        // one's problem still carries its own index.
        let text = GOOD.replace(
            "    - { name: main, address: \"127.0.0.1:8080\" }",
            "    - { address: \"127.0.0.1:8080\" }\n    - { name: b, address: \"127.0.0.1:8081\", tls: 3 }",
        );
        let err = parse_str("t.yaml", &text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths[..2],
            ["proxy.listeners[0]", "proxy.listeners[1].tls"],
            "{err}"
        );
        assert!(err.to_string().contains("missing field `name`"), "{err}");
        // References are not checked against a document with an entry missing.
        assert!(
            err.issues[2]
                .message
                .contains("cross-reference checks skipped"),
            "{err}"
        );
    }
}
