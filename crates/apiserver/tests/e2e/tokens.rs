//! Service-account tokens as kube-apiserver checks them: audiences, times, the
//! ServiceAccount and the bound Pod or Secret still existing with the uid in the token,
//! and TokenRequest's expiration rules. Also the modes of the server's secret files.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::{self, TestServer};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// POSTs JSON as the admin; the answer, or (code, message) of a failure.
async fn post(s: &TestServer, path: &str, body: Value) -> Result<Value, (u16, String)> {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    match s.client().request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(e)) => Err((e.code, e.message.clone())),
        Err(e) => panic!("POST {path}: {e}"),
    }
}

async fn delete(s: &TestServer, path: &str) {
    let req = http::Request::delete(format!("{path}?gracePeriodSeconds=0"))
        .body(Vec::new())
        .expect("request");
    s.client()
        .request::<Value>(req)
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
}

async fn create_sa(s: &TestServer, name: &str) -> String {
    let sa = post(
        s,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await
    .expect("create the ServiceAccount");
    sa["metadata"]["uid"].as_str().expect("uid").to_string()
}

async fn create_pod(s: &TestServer, name: &str, sa: &str) -> String {
    let pod = post(
        s,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .expect("create the Pod");
    pod["metadata"]["uid"].as_str().expect("uid").to_string()
}

async fn create_secret(s: &TestServer, name: &str) -> String {
    let secret = post(
        s,
        "/api/v1/namespaces/default/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}}),
    )
    .await
    .expect("create the Secret");
    secret["metadata"]["uid"].as_str().expect("uid").to_string()
}

/// A TokenRequest for `sa` with `spec`.
async fn token_request(s: &TestServer, sa: &str, spec: Value) -> Result<Value, (u16, String)> {
    post(
        s,
        &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
    )
    .await
}

async fn token(s: &TestServer, sa: &str, spec: Value) -> String {
    let tr = token_request(s, sa, spec).await.expect("TokenRequest");
    tr["status"]["token"].as_str().expect("token").to_string()
}

/// HTTP status of a GET of `/api` with `token` (every authenticated identity may read
/// discovery: 200 when the token authenticates, 401 when not).
async fn status_with(s: &TestServer, token: &str) -> u16 {
    let mut config = s.handle.admin_client_config();
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key_data = None;
    config.auth_info.token = Some(token.to_string().into());
    let client = kube::Client::try_from(config).expect("client");
    let req = http::Request::get("/api")
        .body(Vec::new())
        .expect("request");
    match client.request::<Value>(req).await {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("GET with a token: {e}"),
    }
}

/// Polls until a request with `token` gets `code` (deletions are seen promptly, but
/// kube-apiserver's informers are not synchronous either).
async fn eventually_status(s: &TestServer, token: &str, code: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = status_with(s, token).await;
        if got == code {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: got {got}, want {code}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The claims of a token (no signature check).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A token signed with the cluster's service-account key, with `claims`.
fn forge(dir: &Path, claims: &Value) -> String {
    let key = std::fs::read(dir.join("pki/sa.key")).expect("sa.key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).expect("EC key"),
    )
    .expect("sign")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_not_the_api_servers() {
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let vault = token(&s, "robot", json!({"audiences": ["vault"]})).await;
    assert_eq!(claims(&vault)["aud"], json!(["vault"]));
    assert_eq!(status_with(&s, &vault).await, 401);
    let api = token(&s, "robot", json!({})).await;
    assert_eq!(claims(&api)["aud"], json!([ISSUER]));
    assert_eq!(status_with(&s, &api).await, 200);
    let both = token(&s, "robot", json!({"audiences": ["vault", ISSUER]})).await;
    assert_eq!(status_with(&s, &both).await, 200);

    // A TokenReview for the token's own audience accepts it; for the API server's not.
    let review = |token: &str, auds: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": auds}})
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let ok = post(&s, path, review(&vault, json!(["vault"])))
        .await
        .unwrap();
    assert_eq!(ok["status"]["authenticated"], json!(true), "{ok}");
    assert_eq!(ok["status"]["audiences"], json!(["vault"]));
    assert_eq!(
        ok["status"]["user"]["username"],
        json!("system:serviceaccount:default:robot")
    );
    let no = post(&s, path, review(&vault, json!([]))).await.unwrap();
    assert_eq!(no["status"]["authenticated"], json!(false), "{no}");
    assert_eq!(
        no["status"]["error"],
        json!(format!(
            "token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]"
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_times_are_checked_with_a_minute_of_leeway() {
    let s = common::start().await;
    let uid = create_sa(&s, "robot").await;
    let t = now();
    let with_times = |nbf: i64, iat: i64, exp: i64| {
        json!({
            "aud": [ISSUER], "iss": ISSUER, "sub": "system:serviceaccount:default:robot",
            "nbf": nbf, "iat": iat, "exp": exp,
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": uid}},
        })
    };
    let dir = s.dir.path();
    // The forged token is otherwise good.
    assert_eq!(
        status_with(&s, &forge(dir, &with_times(t, t, t + 600))).await,
        200
    );
    // Within the leeway of a clock a little ahead.
    assert_eq!(
        status_with(&s, &forge(dir, &with_times(t + 30, t + 30, t + 600))).await,
        200
    );
    let cases = [
        ("nbf in the future", with_times(t + 600, t, t + 1200)),
        ("iat in the future", with_times(t, t + 600, t + 1200)),
        ("exp in the past", with_times(t - 1200, t - 1200, t - 600)),
    ];
    for (what, c) in cases {
        assert_eq!(status_with(&s, &forge(dir, &c)).await, 401, "{what}");
    }
    // A token of another key, or of another issuer, is nobody's.
    let mut other_issuer = with_times(t, t, t + 600);
    other_issuer["iss"] = json!("https://example.invalid");
    assert_eq!(status_with(&s, &forge(dir, &other_issuer)).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_recreated_service_account_invalidates_its_tokens() {
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let t = token(&s, "robot", json!({})).await;
    assert_eq!(status_with(&s, &t).await, 200);
    delete(&s, "/api/v1/namespaces/default/serviceaccounts/robot").await;
    eventually_status(&s, &t, 401, "token of a deleted ServiceAccount").await;
    // The same name again is another ServiceAccount.
    create_sa(&s, "robot").await;
    assert_eq!(
        status_with(&s, &t).await,
        401,
        "token of the old ServiceAccount"
    );
    let fresh = token(&s, "robot", json!({})).await;
    assert_eq!(status_with(&s, &fresh).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_token_dies_with_its_pod() {
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let uid = create_pod(&s, "p", "robot").await;
    let pod_ref = |uid: &str| json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": uid}});
    let t = token(&s, "robot", pod_ref(&uid)).await;
    assert_eq!(
        claims(&t)["kubernetes.io"]["pod"],
        json!({"name": "p", "uid": uid})
    );
    assert_eq!(status_with(&s, &t).await, 200);
    // Another pod's uid: the object was re-created meanwhile.
    let (code, msg) = token_request(&s, "robot", pod_ref("0123"))
        .await
        .unwrap_err();
    assert_eq!(code, 409);
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on Pod \"p\": the UID in the bound object reference (0123) does not match the UID in record. The object might have been deleted and then recreated"
    );
    // A pod of another ServiceAccount.
    create_pod(&s, "q", "default").await;
    let (code, msg) = token_request(
        &s,
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "q"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 400);
    assert_eq!(
        msg,
        "cannot bind token for serviceaccount \"robot\" to pod running with different serviceaccount name."
    );

    delete(&s, "/api/v1/namespaces/default/pods/p").await;
    eventually_status(&s, &t, 401, "token of a deleted pod").await;
    // The same name again is another pod.
    create_pod(&s, "p", "robot").await;
    assert_eq!(status_with(&s, &t).await, 401, "token of the old pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_bound_token_dies_with_its_secret() {
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let uid = create_secret(&s, "sec").await;
    let t = token(
        &s,
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": "sec"}}),
    )
    .await;
    assert_eq!(
        claims(&t)["kubernetes.io"]["secret"],
        json!({"name": "sec", "uid": uid})
    );
    assert_eq!(status_with(&s, &t).await, 200);
    delete(&s, "/api/v1/namespaces/default/secrets/sec").await;
    eventually_status(&s, &t, 401, "token of a deleted Secret").await;

    let (code, msg) = token_request(
        &s,
        "robot",
        json!({"boundObjectRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (code, msg.as_str()),
        (
            400,
            "cannot bind token to object of type apps/v1, Kind=Deployment"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_expiration_is_what_was_asked_within_kubes_bounds() {
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let (code, msg) = token_request(&s, "robot", json!({"expirationSeconds": 10}))
        .await
        .unwrap_err();
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"
    );
    let too_long = (1_i64 << 32) + 1;
    let (code, msg) = token_request(&s, "robot", json!({"expirationSeconds": too_long}))
        .await
        .unwrap_err();
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        format!("TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: {too_long}: may not specify a duration larger than 2^32 seconds")
    );
    for (asked, want) in [
        (json!(700), 700),
        (json!(null), 3600),
        (json!(1_i64 << 32), 1_i64 << 32),
    ] {
        let tr = token_request(&s, "robot", json!({"expirationSeconds": asked}))
            .await
            .expect("TokenRequest");
        assert_eq!(tr["spec"]["expirationSeconds"], json!(want));
        let c = claims(tr["status"]["token"].as_str().expect("token"));
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert_eq!(exp - iat, want, "{asked}");
        let status_exp = chrono::DateTime::parse_from_rfc3339(
            tr["status"]["expirationTimestamp"]
                .as_str()
                .expect("expirationTimestamp"),
        )
        .expect("RFC 3339");
        assert_eq!(status_exp.timestamp(), exp);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_as_kube_apiserver_answers_it() {
    let bin = skiff_testkit::kubectl::default();
    let s = common::start().await;
    create_sa(&s, "robot").await;
    let k = s.kubectl(bin);
    let ((ok, _, err), vault) = tokio::task::spawn_blocking(move || {
        (
            k.run(&["create", "token", "robot", "--duration=10s"])
                .parts(),
            k.ok(&["create", "token", "robot", "--audience=vault"]),
        )
    })
    .await
    .expect("kubectl");
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        "error: failed to create token: TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"
    );
    assert_eq!(status_with(&s, vault.trim()).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_secrets_are_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let s = common::start().await;
    // A write makes sure the -wal and -shm files exist.
    create_sa(&s, "robot").await;
    let dir = s.dir.path();
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&dir.join("pki")), 0o700);
    let mut secrets = vec![
        "token",
        "pki/ca.key",
        "pki/apiserver.key",
        "pki/admin.key",
        "pki/sa.key",
    ];
    if std::env::var("SKIFF_TEST_DATASTORE").as_deref() != Ok("etcd") {
        secrets.extend(["state.db", "state.db-wal", "state.db-shm"]);
    }
    for f in &secrets {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // An older version's data dir, readable by everyone, is narrowed on the next start.
    drop(s.handle);
    let wide = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    wide(dir, 0o755);
    wide(&dir.join("pki"), 0o755);
    for f in &secrets {
        if dir.join(f).exists() {
            wide(&dir.join(f), 0o644);
        }
    }
    let _again = common::start_in(dir).await;
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&dir.join("pki")), 0o700);
    for f in &secrets {
        let p = dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f} after a restart");
        }
    }
}
