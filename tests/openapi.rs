#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `GET /openapi.json` is the admin API's contract: every operation it documents is exercised here,
//! every answer must have a documented status and a body that validates against the documented
//! schema, and every path serves exactly the documented methods. (A unit test in `src/admin`
//! checks that the router and the document list the same paths.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The document plus the operations the test has exercised.
struct Contract {
    doc: Value,
    http: reqwest::Client,
    base: String,
    exercised: BTreeSet<String>,
}

impl Contract {
    /// `(path template, method, operation)` of the operation with this id.
    fn operation(&self, op_id: &str) -> (String, String, Value) {
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op["operationId"] == op_id {
                    return (path.clone(), method.clone(), op.clone());
                }
            }
        }
        panic!("operation {op_id} is not in the OpenAPI document");
    }

    /// Call operation `op_id` on `path` and check the answer against the document.
    async fn call(&mut self, op_id: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (template, method, op) = self.operation(op_id);
        assert!(
            path_matches(&template, path.split('?').next().unwrap()),
            "{path} is not an instance of {template}"
        );
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let mut response = op["responses"][status.to_string()].clone();
        assert!(
            !response.is_null(),
            "{op_id} answered {status}, which the document does not list: {text}"
        );
        if let Some(r) = response.get("$ref").and_then(Value::as_str) {
            response = self.resolve(r).clone();
        }
        let value = match response["content"].as_object() {
            None => {
                assert!(
                    text.is_empty(),
                    "{op_id} {status}: no body documented: {text}"
                );
                Value::Null
            }
            Some(content) => {
                let (media, spec) = content.iter().next().unwrap();
                let ctype = ctype.unwrap_or_default();
                assert!(
                    ctype.starts_with(media.as_str()),
                    "{op_id} {status}: content type {ctype}, documented {media}"
                );
                if media == "application/json" {
                    let v: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{op_id} {status}: not JSON ({e}): {text}"));
                    let mut errors = Vec::new();
                    self.validate(&spec["schema"], &v, "$", &mut errors);
                    assert!(
                        errors.is_empty(),
                        "{op_id} {status}: body does not fit the schema: {errors:?}\n{v:#}"
                    );
                    v
                } else {
                    Value::String(text)
                }
            }
        };
        self.exercised.insert(op_id.to_string());
        (status, value)
    }

    fn resolve(&self, reference: &str) -> &Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $refs: {reference}"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"))
    }

    /// The subset of JSON Schema that the document uses: $ref, type, nullable, enum, required,
    /// properties, additionalProperties and items.
    fn validate(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(r).clone();
            return self.validate(&target, v, at, errors);
        }
        if v.is_null() {
            if schema["nullable"] != true {
                errors.push(format!("{at}: null, but not nullable"));
            }
            return;
        }
        let ok = match schema["type"].as_str() {
            None => true,
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            Some(t) => panic!("schema type {t} not supported by this checker"),
        };
        if !ok {
            errors.push(format!("{at}: expected {}, got {v}", schema["type"]));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(v) {
                errors.push(format!("{at}: {v} is not one of {allowed:?}"));
            }
        }
        if let Some(obj) = v.as_object() {
            for key in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(key.as_str().unwrap()) {
                    errors.push(format!("{at}: missing required `{key}`"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, val) in obj {
                let child = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(s, val, &child, errors),
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => errors.push(format!("{child}: not documented")),
                        s @ Value::Object(_) => self.validate(s, val, &child, errors),
                        // Undocumented fields are an error: the document must name every field.
                        _ if props.is_some() => errors.push(format!("{child}: not documented")),
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                self.validate(items, x, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let db_dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    ) + &format!(
        "database:\n  url: \"sqlite://{}/state.db\"\n",
        db_dir.path().display()
    );
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/openapi.json", gw.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut api = Contract {
        doc,
        http,
        base: gw.admin.clone(),
        exercised: BTreeSet::new(),
    };

    // Every path serves exactly the documented methods: a method nobody uses gets 405 and `Allow`.
    let paths: BTreeMap<String, Value> = api.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (template, item) in &paths {
        let path = template.replace("{name}", "b1").replace("{id}", "x");
        let r = api
            .http
            .patch(format!("{}{path}", gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "PATCH {path}");
        let mut allowed: Vec<String> = r.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_lowercase())
            .filter(|m| m != "head")
            .collect();
        allowed.sort();
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
            .cloned()
            .collect();
        documented.sort();
        assert_eq!(allowed, documented, "methods of {template}");
    }

    // Health, metrics, the document itself.
    assert_eq!(api.call("livez", "/livez", None).await.0, 200);
    let (s, ready) = api.call("readyz", "/readyz", None).await;
    assert_eq!(s, 200, "{ready}");
    let (s, text) = api.call("metrics", "/metrics", None).await;
    assert_eq!(s, 200);
    assert!(text
        .as_str()
        .unwrap()
        .contains("trino_edge_snapshot_version"));
    assert_eq!(api.call("openapi", "/openapi.json", None).await.0, 200);
    let (s, info) = api.call("consoleInfo", "/console/info", None).await;
    assert_eq!(s, 200);
    assert_eq!(info["auth"]["enabled"], false);
    assert_eq!(info["readOnly"], false);
    assert_eq!(info["proxy"]["listeners"][0]["port"], port);
    let (s, me) = api.call("whoami", "/api/v1/whoami", None).await;
    assert_eq!(
        (s, &me["authenticated"], &me["role"]),
        (200, &json!(false), &json!("admin"))
    );

    // Backends.
    let (s, list) = api.call("listBackends", "/api/v1/backends", None).await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 1));
    let new = json!({"name": "b2", "url": b2.url(), "group": "adhoc", "max_running_queries": 50});
    let (s, v) = api
        .call("createBackend", "/api/v1/backends", Some(new.clone()))
        .await;
    assert_eq!((s, &v["max_running_queries"]), (201, &json!(50)));
    let (s, _) = api
        .call("createBackend", "/api/v1/backends", Some(new))
        .await;
    assert_eq!(s, 409);
    let (s, v) = api
        .call(
            "createBackend",
            "/api/v1/backends",
            Some(json!({"name": "b3", "url": "ftp://x", "group": "adhoc"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, got) = api.call("getBackend", "/api/v1/backends/b2", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        api.call("getBackend", "/api/v1/backends/nope", None)
            .await
            .0,
        404
    );
    // A GET result can be PUT back as it is (status fields are ignored, limits are kept).
    let mut changed = got.clone();
    changed["weight"] = json!(3);
    let (s, v) = api
        .call("replaceBackend", "/api/v1/backends/b2", Some(changed))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["weight"], &v["max_running_queries"]),
        (&json!(3), &json!(50))
    );
    let (s, _) = api
        .call("replaceBackend", "/api/v1/backends/nope", Some(got))
        .await;
    assert_eq!(s, 404);
    let (s, v) = api
        .call("deactivateBackend", "/api/v1/backends/b2/deactivate", None)
        .await;
    assert_eq!((s, &v["enabled"]), (200, &json!(false)));
    let (s, v) = api
        .call("activateBackend", "/api/v1/backends/b2/activate", None)
        .await;
    assert_eq!((s, &v["enabled"]), (200, &json!(true)));
    let (s, _) = api
        .call("activateBackend", "/api/v1/backends/nope/activate", None)
        .await;
    assert_eq!(s, 404);

    // Groups and policies: a policy sending `svc_*` users to an empty group `etl`.
    let (s, _) = api.call("listGroups", "/api/v1/groups", None).await;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(
            "createGroup",
            "/api/v1/groups",
            Some(json!({"name": "etl", "strategy": "least_load"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = api.call("getGroup", "/api/v1/groups/etl", None).await;
    assert_eq!((s, &v["strategy"]), (200, &json!("least_load")));
    let (s, _) = api
        .call(
            "replaceGroup",
            "/api/v1/groups/etl",
            Some(json!({"name": "etl", "strategy": "random"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api.call("listPolicies", "/api/v1/policies", None).await;
    assert_eq!(s, 200);
    let policy = json!({"name": "etl", "priority": 10, "match": {"user": "^svc_"}, "group": "etl"});
    let (s, v) = api
        .call("createPolicy", "/api/v1/policies", Some(policy.clone()))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            "createPolicy",
            "/api/v1/policies",
            Some(json!({"name": "x", "group": "missing"})),
        )
        .await;
    assert_eq!(s, 400, "a policy for a missing group is refused: {v}");
    let (s, _) = api.call("getPolicy", "/api/v1/policies/etl", None).await;
    assert_eq!(s, 200);
    let mut replaced = policy.clone();
    replaced["match"]["client_tags_any"] = json!(["batch", "etl"]);
    let (s, _) = api
        .call("replacePolicy", "/api/v1/policies/etl", Some(replaced))
        .await;
    assert_eq!(s, 200);

    // Dry runs: the policy matches, but `etl` has no backend, so the default group takes it.
    let (s, d) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(
                json!({"headers": {"X-Trino-User": "svc_load", "X-Trino-Client-Tags": "etl"},
                        "sql": "SELECT 1"}),
            ),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["decision"], "policy");
    assert_eq!(d["policy"], "etl");
    assert_eq!(d["chosenGroup"], "etl");
    assert_eq!(d["group"], "adhoc");
    assert_eq!(d["fallback"]["from"], "etl");
    assert!(["b1", "b2"].contains(&d["backend"]["name"].as_str().unwrap()));
    let (_, d) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"listener": "main", "headers": {"X-Trino-User": "alice"}})),
        )
        .await;
    assert_eq!(
        (&d["decision"], &d["group"]),
        (&json!("default"), &json!("adhoc"))
    );
    assert!(d["explanation"][1]
        .as_str()
        .unwrap()
        .contains("`user` does not match"));
    let (_, d) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"headers": {"X-Trino-Transaction-Id": "txn-1"}})),
        )
        .await;
    assert_eq!(d["decision"], "transaction");
    assert_eq!(d["error"]["errorName"], "UNKNOWN_TRANSACTION");
    assert!(d["backend"].is_null());
    // Both backends drained: the answer is the error a client would get.
    for b in ["b1", "b2"] {
        let path = format!("/api/v1/backends/{b}/deactivate");
        assert_eq!(api.call("deactivateBackend", &path, None).await.0, 200);
    }
    let (_, d) = api
        .call("routeDryRun", "/api/v1/route", Some(json!({})))
        .await;
    assert_eq!(d["error"]["errorName"], "NO_BACKEND_AVAILABLE", "{d}");
    assert_eq!(d["error"]["httpStatus"], 503);
    assert!(d["backend"].is_null());
    for b in ["b1", "b2"] {
        let path = format!("/api/v1/backends/{b}/activate");
        assert_eq!(api.call("activateBackend", &path, None).await.0, 200);
    }
    let (s, _) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"listener": "nope"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"headers": {"X-Trino-User": "a"}, "sq1": "typo"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"sql": "x".repeat(100 * 1024)})),
        )
        .await;
    assert_eq!(s, 413);

    // Hybrid: a remote result joined locally, and a statement refused before anything runs.
    let (s, d) = api
        .call(
            "hybridQuery",
            "/api/query/hybrid",
            Some(json!({"register": {"t": "SELECT * FROM web.daily"},
                        "sql": "SELECT count(*) AS n, sum(views) AS v FROM t"})),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["rows"], json!([[7, 28980]]));
    // Placed like a submission: either backend of `adhoc`.
    let placed = d["remote_stats"]["t"]["backend"]
        .as_str()
        .unwrap_or_default();
    assert!(["b1", "b2"].contains(&placed), "{d}");
    let (s, d) = api
        .call(
            "hybridQuery",
            "/api/query/hybrid",
            Some(json!({"sql": "DROP TABLE t"})),
        )
        .await;
    assert_eq!((s, &d["error"]["type"]), (400, &json!("validation")), "{d}");

    // History: a query through the proxy shows up (the writer batches, so wait for it).
    let client = Client::new(&gw.url);
    let id = client.run("SELECT 42", &[]).await.id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = api
            .call("getQuery", &format!("/api/v1/queries/{id}"), None)
            .await;
        if s == 200 {
            assert_eq!(v["queryId"], json!(id));
            break;
        }
        assert!(Instant::now() < deadline, "history entry never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, page) = api
        .call("listQueries", "/api/v1/queries?limit=5", None)
        .await;
    assert_eq!((s, page["queries"].as_array().unwrap().len()), (200, 1));
    let (s, _) = api
        .call("listQueries", "/api/v1/queries?limit=many", None)
        .await;
    assert_eq!(s, 400);

    // The gateway's queue: a user at a running limit waits (the dry run says so), is listed,
    // and is canceled.
    let (s, _) = api
        .call(
            "replaceGroup",
            "/api/v1/groups/adhoc",
            Some(json!({"name": "adhoc", "queue": {"max_running_per_user": 1}})),
        )
        .await;
    assert_eq!(s, 200);
    let r = client
        .submit("SELECT * FROM UNNEST(sequence(1, 100000))", &[])
        .await;
    assert_eq!(r.status(), 200);
    let (s, d) = api
        .call(
            "routeDryRun",
            "/api/v1/route",
            Some(json!({"headers": {"X-Trino-User": "tester"}})),
        )
        .await;
    assert_eq!((s, &d["queue"]["group"]), (200, &json!("adhoc")), "{d}");
    assert!(d["backend"].is_null() && d["error"].is_null(), "{d}");
    let held: Value = client.submit("SELECT 2", &[]).await.json().await.unwrap();
    assert_eq!(held["stats"]["state"], "QUEUED", "{held}");
    let held_id = held["id"].as_str().unwrap();
    let (s, q) = api.call("listQueue", "/api/v1/queue", None).await;
    assert_eq!(
        (s, &q["queued"][0]["queryId"]),
        (200, &json!(held_id)),
        "{q}"
    );
    assert_eq!(q["queued"][0]["position"], 1);
    assert_eq!(q["running"][0]["name"], "tester", "{q}");
    let path = format!("/api/v1/queue/{held_id}");
    assert_eq!(api.call("cancelQueued", &path, None).await.0, 204);
    assert_eq!(
        api.call("cancelQueued", "/api/v1/queue/nope", None).await.0,
        404
    );
    let (s, _) = api
        .call(
            "replaceGroup",
            "/api/v1/groups/adhoc",
            Some(json!({"name": "adhoc"})),
        )
        .await;
    assert_eq!(s, 200);

    // Deletes, in reference order; a group still in use is refused.
    let (s, _) = api.call("deleteGroup", "/api/v1/groups/etl", None).await;
    assert_eq!(s, 409, "the policy still uses `etl`");
    assert_eq!(
        api.call("deletePolicy", "/api/v1/policies/etl", None)
            .await
            .0,
        204
    );
    assert_eq!(
        api.call("deleteGroup", "/api/v1/groups/etl", None).await.0,
        204
    );
    assert_eq!(
        api.call("deleteBackend", "/api/v1/backends/b2", None)
            .await
            .0,
        204
    );
    assert_eq!(
        api.call("deleteBackend", "/api/v1/backends/b2", None)
            .await
            .0,
        404
    );

    let documented: BTreeSet<String> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_string))
        .collect();
    let missed: Vec<_> = documented.difference(&api.exercised).collect();
    assert!(
        missed.is_empty(),
        "operations no test exercised: {missed:?}"
    );
}
