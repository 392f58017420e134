//! The connection set-up commands end to end: `policy` documents (golden), `check` against
//! moto for a passing connection and each failure it must explain, and `preview`.

mod common;

use common::*;
use serde_json::{Value, json};

const PRINCIPAL: &str = "arn:aws:iam::111122223333:role/s3-importd";

/// A configuration folder whose `s3-importd.toml` names the daemon's principal (or not).
fn config(principal: bool) -> ConfigDir {
    let cfg = ConfigDir::new();
    let mut settings = "state = \"state/state.db\"\n".to_string();
    if principal {
        settings.push_str(&format!("aws_principal = \"{PRINCIPAL}\"\n"));
    }
    std::fs::write(cfg.path().join("s3-importd.toml"), settings).unwrap();
    cfg
}

fn policy_json(cfg: &ConfigDir, args: &[&str]) -> Value {
    let out = stdout_of(
        &binary(cfg.path())
            .env("AWS_ENDPOINT_URL_STS", moto())
            .args(args)
            .output()
            .unwrap(),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn policy_documents() {
    let cfg = config(true);
    let role = "arn:aws:iam::123456789012:role/s3-importd-acme";
    cfg.connection(
        "acme",
        &s3_connection(
            "acme-exports",
            "products/",
            &format!("role_arn = \"{role}\"\nexternal_id = \"ext-123\""),
        ),
    );
    cfg.connection(
        "whole",
        &s3_connection("acme-exports", "", &format!("role_arn = \"{role}\"")),
    );
    cfg.connection("plain", &s3_connection("acme-exports", "in/", ""));

    let doc = policy_json(&cfg, &["policy", "acme", "--json"]);
    assert_eq!(
        doc["permission_policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListTheFolder",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": "arn:aws:s3:::acme-exports",
                    "Condition": {"StringLike": {"s3:prefix": ["products/", "products/*"]}}
                },
                {
                    "Sid": "ReadTheFolder",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-exports/products/*"
                }
            ]
        })
    );
    assert_eq!(
        doc["trust_policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "S3ImportdAssumesThisRole",
                "Effect": "Allow",
                "Principal": {"AWS": PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "ext-123"}}
            }]
        })
    );

    // No prefix: the whole bucket, no condition; no external ID: no condition either.
    let doc = policy_json(&cfg, &["policy", "whole", "--json"]);
    let statements = doc["permission_policy"]["Statement"].as_array().unwrap();
    assert!(statements[0].get("Condition").is_none(), "{doc}");
    assert_eq!(statements[1]["Resource"], json!("arn:aws:s3:::acme-exports/*"));
    assert!(
        doc["trust_policy"]["Statement"][0].get("Condition").is_none(),
        "{doc}"
    );

    // A fresh external ID is printed and used.
    let doc = policy_json(&cfg, &["policy", "whole", "--new-external-id", "--json"]);
    let id = doc["new_external_id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(
        doc["trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!(id)
    );

    // Without a role, only the permission policy, for the daemon's own identity.
    let doc = policy_json(&cfg, &["policy", "plain", "--json"]);
    assert_eq!(doc["trust_policy"], Value::Null);

    // The text form: every document between the comment lines pastes as JSON as it is.
    let text = stdout_of(&run_binary(cfg.path(), &["policy", "acme"]));
    let blocks: Vec<Value> = text
        .split("\n#")
        .filter_map(|chunk| chunk.find("\n{").map(|at| &chunk[at..]))
        .map(|json| serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}")))
        .collect();
    assert_eq!(blocks.len(), 2, "{text}");
    assert_eq!(blocks[1]["Statement"][0]["Principal"]["AWS"], json!(PRINCIPAL));
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_asks_sts_for_the_principal_when_none_is_configured() {
    let cfg = config(false);
    cfg.connection(
        "acme",
        &s3_connection(
            "acme-exports",
            "p/",
            "role_arn = \"arn:aws:iam::123456789012:role/r\"",
        ),
    );
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::new()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .endpoint_url(moto())
            .build(),
    );
    let caller = sts.get_caller_identity().send().await.unwrap().arn.unwrap();
    let doc = policy_json(&cfg, &["policy", "acme", "--json"]);
    assert_eq!(
        doc["trust_policy"]["Statement"][0]["Principal"]["AWS"],
        json!(caller)
    );
}

/// Runs `check` with STS on moto; returns (exit code, stdout).
fn check(cfg: &ConfigDir, name: &str) -> (i32, String) {
    let out = binary(cfg.path())
        .env("AWS_ENDPOINT_URL_STS", moto())
        .args(["check", name])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_and_explains_each_failure() {
    let client = s3();
    let b = bucket(&client, "check").await;
    put(&client, &b, "in/a.jsonl", "{\"id\": \"1\"}\n").await;
    put(&client, &b, "in/s3-importd-challenge-7f3a", Vec::new()).await;
    let cold = bucket(&client, "cold").await;
    client
        .put_object()
        .bucket(&cold)
        .key("in/archived.jsonl")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"{\"id\": \"1\"}\n",
        ))
        .send()
        .await
        .unwrap();

    let cfg = config(true);
    let role = "role_arn = \"arn:aws:iam::123456789012:role/s3-importd-acme\"\nexternal_id = \"x-1\"";
    cfg.connection(
        "good",
        &s3_connection(
            &b,
            "in/",
            &format!("{role}\nchallenge_file = \"s3-importd-challenge-7f3a\""),
        ),
    );
    cfg.connection("nobucket", &s3_connection("no-such-bucket-s3i", "in/", ""));
    cfg.connection(
        "nochallenge",
        &s3_connection(&b, "in/", "challenge_file = \"s3-importd-challenge-other\""),
    );
    cfg.connection("archived", &s3_connection(&cold, "in/", ""));
    std::fs::write(cfg.path().join("blocker"), "a file where a folder should be").unwrap();
    cfg.connection(
        "blocked",
        &s3_connection(&b, "in/", "").replace("path = \"out\"", "path = \"blocker/out\""),
    );

    let (code, out) = check(&cfg, "good");
    assert_eq!(code, 0, "{out}");
    for line in [
        "  ok       configuration: connections/good.toml is valid",
        "  ok       credentials: found (access key …ting)",
        "  ok       assume role: arn:aws:iam::123456789012:role/s3-importd-acme as session s3-importd-good",
        &format!("  ok       bucket: {b} exists in us-east-1"),
        &format!("  ok       list the folder: 2 objects under s3://{b}/in/"),
        "  ok       read an object: in/a.jsonl (first 12 bytes)",
        "  ok       challenge file: in/s3-importd-challenge-7f3a exists and is empty",
        "all checks passed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    let (code, out) = check(&cfg, "nobucket");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAILED   bucket: bucket no-such-bucket-s3i does not exist\n"),
        "{out}"
    );
    assert!(out.contains("fix: check `bucket` in [source]"), "{out}");
    assert!(
        out.contains("  skipped  list the folder: needs the bucket"),
        "{out}"
    );

    let (code, out) = check(&cfg, "nochallenge");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "  FAILED   challenge file: in/s3-importd-challenge-other does not exist in s3://{b}/in/"
        )),
        "{out}"
    );

    let (code, out) = check(&cfg, "archived");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  FAILED   read an object: reading s3://"), "{out}");
    assert!(out.contains("InvalidObjectState"), "{out}");
    assert!(
        out.contains("fix: the object is archived (Glacier or Deep Archive)"),
        "{out}"
    );

    let (code, out) = check(&cfg, "blocked");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("blocker is in the way of"), "{out}");
    assert!(out.contains("fix: point `path` in [target] at a folder"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_lists_candidates_and_parses_the_newest_without_changing_state() {
    let client = s3();
    let b = bucket(&client, "preview").await;
    put(&client, &b, "in/a.jsonl", "{\"id\": \"a1\"}\n").await;
    put(&client, &b, "in/empty.jsonl", Vec::new()).await;
    put(&client, &b, "in/skip.txt", "x").await;
    // Newest last: LastModified has one-second resolution.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    put(
        &client,
        &b,
        "in/b.jsonl",
        "{\"id\": \"b1\", \"n\": 1}\n{\"nope\": 2}\n{\"id\": \"b3\"}\n{\"id\": \"b4\"}\n",
    )
    .await;
    let cfg = config(false);
    cfg.connection("p", &s3_connection(&b, "in/", "include = [\"*.jsonl\"]"));

    let out = stdout_of(&run_binary(cfg.path(), &["preview", "p", "--rows", "3"]));
    assert!(
        out.contains(&format!(
            "preview p: 4 listed in s3://{b}/in/; the next run would import 2, and skip 2"
        )),
        "{out}"
    );
    assert!(out.contains("  in/a.jsonl  13 bytes  modified "), "{out}");
    assert!(out.contains("skipped: 1 empty; 1 excluded by a glob"), "{out}");
    assert!(out.contains("first rows of in/b.jsonl (the newest)"), "{out}");
    assert!(
        out.contains("  read as jsonl (one object per line); encoding UTF-8 (a byte order mark wins); compression from the first bytes or the extension\n"),
        "{out}"
    );
    assert!(out.contains("  line  id\n  1     b1\n  3     b3\n"), "{out}");
    // (The bucket's random name may hold "b4": the row's cell is looked for.)
    assert!(!out.contains(" b4\n"), "only the first 3 rows: {out}");
    assert!(
        out.contains("row errors:\n  line 2 field id: required value is missing"),
        "{out}"
    );
    // The verdict counts every row of the file, not only those shown.
    assert!(
        out.contains("verdict: the file would be imported: 3 good rows, 1 bad (max_bad_rows = \"1% or 5\")"),
        "{out}"
    );
    cfg.connection(
        "p",
        &s3_connection(&b, "in/", "include = [\"*.jsonl\"]")
            .replace("[template]", "[template]\nmax_bad_rows = \"0\""),
    );
    let out = stdout_of(&run_binary(cfg.path(), &["preview", "p", "--rows", "1"]));
    assert!(
        out.contains("verdict: the file would be rejected: 1 of 4 rows are bad, over max_bad_rows = \"0\", which allows 0 of 4"),
        "{out}"
    );

    let status = stdout_of(&run_binary(cfg.path(), &["status", "p", "--json"]));
    let status: Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(status["last_run"], Value::Null, "preview records no run");
    assert_eq!(status["ledger_size"], json!(0));
    assert!(cfg.rows().is_empty());
}

/// A moto server of the test's own, with IAM enforced after the first `free_actions`
/// requests (moto's `INITIAL_NO_AUTH_ACTION_COUNT`). Stopped when dropped.
struct EnforcingMoto {
    child: std::process::Child,
    url: String,
}

impl EnforcingMoto {
    fn start(free_actions: u32) -> EnforcingMoto {
        let program = std::env::var("S3_IMPORTD_TEST_MOTO_SERVER")
            .expect("S3_IMPORTD_TEST_MOTO_SERVER is not set: run the tests with scripts/test");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", free_actions.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        // Owned at once, so that the process is stopped even if it never answers.
        let server = EnforcingMoto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Bounded wait for the port to accept connections.
        for _ in 0..150 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("moto_server did not start on port {port}");
    }
}

impl EnforcingMoto {
    /// An S3 client of the set-up identity (static keys, which hold no policy).
    fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .endpoint_url(&self.url)
                .force_path_style(true)
                .build(),
        )
    }

    /// An IAM client of the set-up identity.
    fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::new()
                .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
                .region(aws_sdk_iam::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .endpoint_url(&self.url)
                .build(),
        )
    }
}

/// Creates the user `importer` holding `policy` and returns its access key (three requests).
async fn importer(iam: &aws_sdk_iam::Client, policy: &str) -> aws_sdk_iam::types::AccessKey {
    iam.create_user().user_name("importer").send().await.unwrap();
    iam.put_user_policy()
        .user_name("importer")
        .policy_name("s3-importd")
        .policy_document(policy)
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("importer")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap()
}

impl Drop for EnforcingMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_policy_is_enough_and_denies_reading_outside_the_folder() {
    // Six set-up requests go unchecked; every request after them is checked against IAM.
    let own = EnforcingMoto::start(6);
    let (s3, iam) = (own.s3(), own.iam());
    let b = "least-privilege";
    let endpoint = &own.url;
    let cfg = config(false);
    let conn = |prefix: &str| s3_connection(b, prefix, "").replace(&moto(), endpoint);
    cfg.connection("inside", &conn("in/"));
    cfg.connection("outside", &conn("out/"));
    let policy = policy_json(&cfg, &["policy", "inside", "--json"])["permission_policy"].to_string();

    s3.create_bucket().bucket(b).send().await.unwrap(); // 1
    put(&s3, b, "in/a.jsonl", "{\"id\": \"a\"}\n").await; // 2
    put(&s3, b, "out/secret.jsonl", "{\"id\": \"s\"}\n").await; // 3
    let key = importer(&iam, &policy).await; // 4, 5, 6

    // Enforcement is on: the set-up identity, which holds no policy, is refused.
    let refused = s3.list_objects_v2().bucket(b).send().await;
    assert!(refused.is_err(), "moto enforces IAM now");

    let as_importer = |args: &[&str]| {
        binary(cfg.path())
            .env("AWS_ACCESS_KEY_ID", key.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
            .args(args)
            .output()
            .unwrap()
    };
    let out = stdout_of(&as_importer(&["run", "inside"]));
    assert!(
        out.contains("inside: listed 1, new 1, imported 1, rejected 0, failed 0; rows 1"),
        "{out}"
    );
    assert_eq!(cfg.rows().len(), 1);

    // Outside the folder, reading is denied. (moto does not evaluate the s3:prefix condition
    // on ListBucket, so the listing itself is allowed here; AWS refuses it.)
    let out = as_importer(&["run", "outside"]);
    let text_out = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text_out}");
    assert!(text_out.contains("failed 1"), "{text_out}");
    assert!(text_out.contains("AccessDenied"), "{text_out}");
    assert_eq!(
        cfg.rows().len(),
        1,
        "nothing from outside the folder was delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_destination_role_policies_are_enough_and_the_external_id_and_bucket_owner_are_sent() {
    // Eight set-up requests go unchecked; every request after them is checked against IAM,
    // AssumeRole against the role's trust policy (principal and sts:ExternalId) too.
    let own = EnforcingMoto::start(8);
    let proxy = RecordingProxy::start(&own.url).await;
    let (s3, iam) = (own.s3(), own.iam());
    let (src, dst) = ("partner-exports", "our-loads");
    let user = "arn:aws:iam::123456789012:user/importer";
    let writer = "arn:aws:iam::123456789012:role/writer";
    let cfg = ConfigDir::new();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        format!("state = \"state/state.db\"\naws_principal = \"{user}\"\n"),
    )
    .unwrap();
    let connection = |external_id: &str| {
        s3_connection(src, "in/", "expected_bucket_owner = \"123456789012\"")
            .replace(&moto(), &proxy.url)
            .replace(
                "[target]\ntype = \"file\"\npath = \"out\"",
                &format!(
                    "[target]\ntype = \"s3\"\nbucket = \"{dst}\"\nregion = \"us-east-1\"\nprefix = \"loads/\"\nendpoint = \"{}\"\nforce_path_style = true\nrole_arn = \"{writer}\"\n{external_id}\nexpected_bucket_owner = \"123456789012\"",
                    proxy.url
                ),
            )
    };
    // Without an external ID the connection is refused, but `policy` still prints one.
    cfg.connection("loads", &connection(""));
    let refused = run_binary(cfg.path(), &["validate"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("connections/loads.toml: target.external_id: missing: role_arn \"arn:aws:iam::123456789012:role/writer\" is assumed without an external ID"),
        "{}",
        text(&refused.stderr)
    );
    let docs = policy_json(&cfg, &["policy", "loads", "--new-external-id", "--json"]);
    let id = docs["target_new_external_id"].as_str().unwrap().to_string();
    assert_eq!(
        docs["target_trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!(id)
    );
    assert_eq!(
        docs["target_trust_policy"]["Statement"][0]["Principal"]["AWS"],
        json!(user)
    );
    assert_eq!(
        docs["bucket_policy"]["Statement"][1]["Principal"]["AWS"],
        json!(writer)
    );
    cfg.connection("loads", &connection(&format!("external_id = \"{id}\"")));
    let valid = run_binary(cfg.path(), &["validate"]);
    assert!(valid.status.success(), "{}", text(&valid.stderr));

    // The daemon's user may read the source and assume the writer; the writer holds exactly
    // the printed permission policy and trust policy.
    let mut user_policy = docs["permission_policy"].clone();
    user_policy["Statement"].as_array_mut().unwrap().push(json!({
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": writer
    }));
    s3.create_bucket().bucket(src).send().await.unwrap(); // 1
    s3.create_bucket().bucket(dst).send().await.unwrap(); // 2
    put(&s3, src, "in/a.jsonl", "{\"id\": \"a\"}\n").await; // 3
    let key = importer(&iam, &user_policy.to_string()).await; // 4, 5, 6
    iam.create_role()
        .role_name("writer")
        .assume_role_policy_document(docs["target_trust_policy"].to_string())
        .send()
        .await
        .unwrap(); // 7
    iam.put_role_policy()
        .role_name("writer")
        .policy_name("s3-importd")
        .policy_document(docs["target_permission_policy"].to_string())
        .send()
        .await
        .unwrap(); // 8
    assert!(
        s3.list_objects_v2().bucket(dst).send().await.is_err(),
        "moto enforces IAM now"
    );

    let as_importer = |args: &[&str]| {
        binary(cfg.path())
            .env("AWS_ACCESS_KEY_ID", key.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
            .env("AWS_ENDPOINT_URL_STS", &proxy.url)
            .args(args)
            .output()
            .unwrap()
    };
    let checked = as_importer(&["check", "loads"]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    assert!(
        text(&checked.stdout).contains("accepts writes (a probe object was put and deleted)"),
        "{}",
        text(&checked.stdout)
    );
    let out = stdout_of(&as_importer(&["run", "loads"]));
    assert!(out.contains("imported 1"), "{out}");

    // What the writer may not do: delete a load (only check's probes), write elsewhere.
    let requests = proxy.requests();
    assert!(
        requests.contains(&format!("ExternalId={id}")),
        "the external ID is sent"
    );
    let responses = proxy.responses();
    let session = |tag: &str| {
        responses
            .split("<AssumeRoleResult>")
            .nth(1)
            .and_then(|s| s.split(&format!("<{tag}>")).nth(1))
            .and_then(|s| s.split(&format!("</{tag}>")).next())
            .unwrap_or_else(|| panic!("an AssumeRole answer with {tag}"))
            .to_string()
    };
    let as_writer = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                session("AccessKeyId"),
                session("SecretAccessKey"),
                Some(session("SessionToken")),
                None,
                "writer",
            ))
            .endpoint_url(&own.url)
            .force_path_style(true)
            .build(),
    );
    let loads = as_writer
        .list_objects_v2()
        .bucket(dst)
        .prefix("loads/")
        .send()
        .await
        .unwrap();
    let load = loads.contents()[0].key().unwrap().to_string();
    assert!(
        as_writer
            .delete_object()
            .bucket(dst)
            .key(&load)
            .send()
            .await
            .is_err(),
        "the writer cannot delete a load"
    );
    assert!(
        as_writer
            .put_object()
            .bucket(dst)
            .key("elsewhere/x")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
            .send()
            .await
            .is_err(),
        "the writer cannot write outside its folder"
    );

    // Every request to either bucket named the owner account.
    let s3_requests: Vec<&str> = requests
        .split("\r\n\r\n")
        .filter(|block| block.contains(&format!("/{dst}")) || block.contains(&format!("/{src}")))
        .filter(|block| block.starts_with(['G', 'P', 'H', 'D']))
        .collect();
    assert!(s3_requests.len() >= 4, "{requests}");
    for request in s3_requests {
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-amz-expected-bucket-owner: 123456789012"),
            "{request}"
        );
    }

    // A wrong external ID: STS refuses the role, and the run says so in one line, naming the
    // trust policy and the external ID, without retrying and without an SDK dump.
    cfg.connection("loads", &connection("external_id = \"not-the-id\""));
    // (IAM is enforced now, so no new object can be put: the imported one is taken again.)
    let retried = as_importer(&["retry", "loads", "in/a.jsonl"]);
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let refused = as_importer(&["run", "loads"]);
    let (stdout, stderr) = (text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the role could not be assumed: check that its trust policy names this identity and the connection's external_id"),
        "{stdout}"
    );
    assert!(!stderr.contains("trying again"), "{stderr}");
    for shown in [&stdout, &stderr] {
        assert!(
            !shown.contains("Error {") && !shown.contains("SdkBody"),
            "{shown}"
        );
    }
}
