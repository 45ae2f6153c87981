#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests (proptest) for the parsers that face untrusted input: request paths and query
//! ids, the policy matcher (against a plain reference model) and the config loader. Each runs a
//! few hundred generated cases in CI; a failure prints the minimal input.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use trino_edge::config::{parse_str, MatchConfig, PolicyConfig};
use trino_edge::proxy::target::{classify, Target};
use trino_edge::query_id::{coordinator_id, is_valid_query_id};
use trino_edge::routing::policy::CompiledPolicy;
use trino_edge::routing::RequestFacts;

/// A Trino query id: `YYYYMMDD_HHMMSS_NNNNN_ccccc`.
fn query_id() -> impl Strategy<Value = String> {
    ("20[0-9]{6}", "[0-9]{6}", "[0-9]{5,7}", "[a-kmnp-z2-9]{5}")
        .prop_map(|(d, t, n, c)| format!("{d}_{t}_{n}_{c}"))
}

/// Paths made of pieces that matter to the parser, glued in any order.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("%2e".to_string()),
        Just("%2F".to_string()),
        Just("v1".to_string()),
        Just("statement".to_string()),
        Just("executing".to_string()),
        Just("queued".to_string()),
        Just("partialCancel".to_string()),
        Just("query".to_string()),
        Just("ui".to_string()),
        Just("api".to_string()),
        Just("spooled".to_string()),
        query_id(),
        "[a-zA-Z0-9_%.~-]{0,12}",
        "\\PC{0,6}",
        "[\\x00-\\x1f]",
    ];
    proptest::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn classify_never_panics_and_only_yields_valid_ids(
        path in hostile_path(),
        query in proptest::option::of("[a-zA-Z0-9=&_%]{0,40}"),
        post in any::<bool>(),
    ) {
        let method = if post { Method::POST } else { Method::GET };
        if let Ok(Target::Query(id)) = classify(&method, &path, query.as_deref()) {
            prop_assert!(is_valid_query_id(id), "{id:?} from {path:?}");
            prop_assert!(path.contains(id) || query.as_deref().is_some_and(|q| q.contains(id)));
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "."));
        }
    }

    /// The one-pass path check refuses exactly what the plain definition refuses.
    #[test]
    fn the_path_check_matches_its_definition(path in hostile_path()) {
        let path = format!("/{path}");
        let refused_by_definition = path.split('/').any(|seg| seg == ".." || seg == ".")
            || path.bytes().any(|b| b.is_ascii_control())
            || ["%2e", "%2E", "%2f", "%2F"].iter().any(|p| path.contains(p));
        let refused = matches!(
            classify(&Method::GET, &path, None),
            Err(e) if e.message.contains("dot segments")
        );
        prop_assert_eq!(refused, refused_by_definition, "{:?}", path);
    }

    #[test]
    fn every_follow_up_form_resolves_to_its_query(id in query_id(), slug in "[a-z0-9]{1,12}", n in 0u32..1000) {
        let forms = [
            format!("/v1/statement/executing/{id}/{slug}/{n}"),
            format!("/v1/statement/queued/{id}/{slug}/{n}"),
            format!("/v1/statement/executing/partialCancel/{id}/0/{slug}/{n}"),
            format!("/v1/statement/{id}/{n}"),
            format!("/v1/query/{id}"),
            format!("/ui/api/query/{id}"),
        ];
        for path in &forms {
            let got = classify(&Method::GET, path, None);
            prop_assert!(matches!(got, Ok(Target::Query(q)) if q == id), "{path}: {got:?}");
        }
        let ui = classify(&Method::GET, "/ui/query.html", Some(&id));
        prop_assert!(matches!(ui, Ok(Target::Query(q)) if q == id));
        prop_assert_eq!(coordinator_id(&id).map(|c| c.to_vec()), Some(id.as_bytes()[id.len() - 5..].to_vec()));
    }

    #[test]
    fn oversized_or_odd_ids_are_refused(id in "[a-z0-9_]{129,300}|[A-Z./ ]{1,20}") {
        let path = format!("/v1/query/{id}");
        let got = classify(&Method::GET, &path, None);
        prop_assert!(!matches!(got, Ok(Target::Query(_))), "{id}: {got:?}");
    }

    #[test]
    fn coordinator_id_never_panics(s in "\\PC{0,40}") {
        if let Some(c) = coordinator_id(&s) {
            prop_assert!(s.ends_with(std::str::from_utf8(&c).unwrap()));
        }
    }
}

/// The policy conditions the generator varies, and a reference evaluation of them.
#[derive(Debug, Clone)]
struct Conditions {
    listener: Option<String>,
    user_prefix: Option<String>,
    tags_all: Vec<String>,
    tags_any: Vec<String>,
    host: Option<String>,
    team: Option<String>,
}

#[derive(Debug, Clone)]
struct Request {
    listener: String,
    user: Option<String>,
    tags: Vec<String>,
    host: Option<String>,
    team: Option<String>,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("etl"), Just("bi"), Just("svc_x")].prop_map(String::from)
}

fn conditions() -> impl Strategy<Value = Conditions> {
    (
        proptest::option::of(name()),
        proptest::option::of(name()),
        proptest::collection::vec(name(), 0..3),
        proptest::collection::vec(name(), 0..3),
        proptest::option::of(prop_oneof![Just("x.example.com"), Just("Y.example.com")]),
        proptest::option::of(name()),
    )
        .prop_map(
            |(listener, user_prefix, tags_all, tags_any, host, team)| Conditions {
                listener,
                user_prefix,
                tags_all,
                tags_any,
                host: host.map(String::from),
                team,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    (
        name(),
        proptest::option::of("(a|b|svc_x|etl)[a-z_]{0,4}"),
        proptest::collection::vec(name(), 0..4),
        proptest::option::of(prop_oneof![
            Just("x.example.com"),
            Just("y.EXAMPLE.com"),
            Just("z")
        ]),
        proptest::option::of(name()),
    )
        .prop_map(|(listener, user, tags, host, team)| Request {
            listener,
            user,
            tags,
            host: host.map(String::from),
            team,
        })
}

/// What the README says a policy means, written as plainly as possible.
fn reference(c: &Conditions, r: &Request) -> bool {
    c.listener.as_ref().is_none_or(|l| *l == r.listener)
        && c.user_prefix
            .as_ref()
            .is_none_or(|p| r.user.as_ref().is_some_and(|u| u.starts_with(p.as_str())))
        && c.tags_all.iter().all(|t| r.tags.contains(t))
        && (c.tags_any.is_empty() || c.tags_any.iter().any(|t| r.tags.contains(t)))
        && c.host
            .as_ref()
            .is_none_or(|h| r.host.as_ref().is_some_and(|rh| rh.eq_ignore_ascii_case(h)))
        && c.team.as_ref().is_none_or(|t| r.team.as_ref() == Some(t))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_policy_matcher_agrees_with_the_reference(c in conditions(), r in request()) {
        let policy = PolicyConfig {
            name: "p".into(),
            priority: 0,
            match_: MatchConfig {
                listener: c.listener.clone(),
                client_tags_all: c.tags_all.clone(),
                client_tags_any: c.tags_any.clone(),
                source: None,
                user: c.user_prefix.as_ref().map(|p| format!("^{}", regex_escape(p))),
                host: c.host.clone(),
                headers: c.team.iter().map(|t| ("X-Team".to_string(), t.clone())).collect(),
                ..MatchConfig::default()
            },
            group: "g".into(),
            fallback_group: None,
            queue: None,
        };
        let compiled = CompiledPolicy::compile(&policy, 0, None).unwrap();
        let mut headers = HeaderMap::new();
        if let Some(t) = &r.team {
            headers.insert(HeaderName::from_static("x-team"), HeaderValue::from_str(t).unwrap());
        }
        let tags = r.tags.join(", ");
        let facts = RequestFacts {
            user: r.user.as_deref(),
            client_tags: (!r.tags.is_empty()).then_some(tags.as_str()),
            host: r.host.as_deref(),
            ..RequestFacts::new(&r.listener, &headers)
        };
        prop_assert_eq!(compiled.matches(&facts), reference(&c, &r), "{:?} {:?}", c, r);
        prop_assert_eq!(compiled.matches(&facts), compiled.mismatch(&facts).is_none());
    }

    #[test]
    fn routing_facts_never_panic_on_any_header_bytes(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
    ) {
        let names = ["x-trino-user", "x-trino-source", "x-trino-client-tags", "host", "x-presto-user", "x-team"];
        let mut headers = HeaderMap::new();
        for (n, v) in names.iter().zip(&values) {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                headers.insert(HeaderName::from_static(n), v);
            }
        }
        if let Ok(facts) = RequestFacts::from_headers("main", &headers) {
            let _ = facts.tags().count();
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

const VALID: &str = r#"
proxy: { listeners: [{ name: main, address: "127.0.0.1:8080" }] }
admin: { address: "127.0.0.1:8090" }
routing:
  default_group: adhoc
  policies:
    - { name: etl, priority: 10, match: { user: "^svc_", client_tags_all: [etl] }, group: etl }
groups: [{ name: adhoc, strategy: round_robin }, { name: etl, strategy: least_load }]
backends:
  - { name: t1, url: "http://127.0.0.1:9001", group: adhoc, weight: 2 }
  - { name: t2, url: "http://127.0.0.1:9002", group: etl, max_running_queries: 10 }
health: { interval: 5s, timeout: 2s, rise: 2, fall: 2 }
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_config_loader_never_panics_on_garbage(text in "\\PC{0,300}") {
        let _ = parse_str("fuzz.yaml", &text);
    }

    /// Replace one scalar of a valid config with something else: the loader either accepts the
    /// result or names at least one problem, each with a message.
    #[test]
    fn a_mutated_config_is_accepted_or_explained(
        at in 0usize..400,
        replacement in prop_oneof![
            Just("-1".to_string()), Just("0".to_string()), Just("''".to_string()),
            Just("[".to_string()), Just("{}".to_string()), Just("~".to_string()),
            Just("\"(unclosed\"".to_string()), Just("99999999999999999999".to_string()),
            Just("1ms".to_string()), Just("ftp://x".to_string()), "[a-z]{1,8}",
        ],
    ) {
        // Replace the token (run of non-separator characters) that covers byte `at`.
        let bytes = VALID.as_bytes();
        let at = at.min(bytes.len() - 1);
        let sep = |b: u8| b" \n,:{}[]\"".contains(&b);
        if sep(bytes[at]) {
            return Ok(());
        }
        let start = (0..at).rev().find(|&i| sep(bytes[i])).map_or(0, |i| i + 1);
        let end = (at..bytes.len()).find(|&i| sep(bytes[i])).unwrap_or(bytes.len());
        let mutated = format!("{}{}{}", &VALID[..start], replacement, &VALID[end..]);
        match parse_str("m.yaml", &mutated) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.issues.is_empty());
                for issue in &e.issues {
                    prop_assert!(!issue.message.is_empty(), "{mutated}");
                }
            }
        }
    }
}

#[test]
fn the_unmutated_config_is_valid() {
    parse_str("valid.yaml", VALID).unwrap();
}
