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
pub fn parse_str(file: &str, text: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        // serde_yaml_ng prefixes nested errors with its own (shorter) path; ours is the precise one.
        let message = e.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => {
                rest.to_string()
            }
            _ => message,
        };
        ConfigError::single(file, path, message)
    })?;
    validate::validate(&config).map_err(|issues| ConfigError {
        file: file.to_string(),
        issues,
    })?;
    Ok(config)
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
}
