#![allow(clippy::unwrap_used)]
//! The console over its real HTTPS listener, called with curl.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use swg_activity::{ActivityStore, SqliteStore};
use swg_console::{ConsoleConfig, ConsoleState};
use swg_identity::{
    unix_now, IdentityConfig, LiveKeys, NewAdminToken, Role, SecretStore, Signer, SigningKeys,
    SqliteSecretStore,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

const ACME_POLICY: &str = r#"
id = "acme"
additional_browsers = ["com.example.browser"]
trusted_apps = ["com.example.trusted"]
bypassed_apps = ["com.example.bypassed"]

[[policies]]
id = "everyone"
[policies.block]
domains = ["blocked.example"]
"#;

struct Console {
    port: u16,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    admin_token: String,
    read_only_token: String,
    authentication_key: String,
    signer: Signer,
    secrets: Arc<SqliteSecretStore>,
    activity: Arc<SqliteStore>,
    policy_file: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Console {
    start_with_other_tenants(&[]).await
}

/// Starts the console with acme's policy file first and then one file per entry of
/// `others` (file name, policy text), each defining one other tenant.
async fn start_with_other_tenants(others: &[(&str, &str)]) -> Console {
    start_with_policies(ACME_POLICY, others).await
}

/// Starts the console with `acme_text` as the first policy file, `acme.toml`, whose
/// first tenant must be acme, and then one file per entry of `others` (file name,
/// policy text).
async fn start_with_policies(acme_text: &str, others: &[(&str, &str)]) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();

    let root = Arc::new(
        swg_ca::RootCa::generate(swg_ca::KeyType::default(), &swg_ca::CaConfig::default()).unwrap(),
    );
    let ca_file = dir.path().join("root.pem");
    std::fs::write(&ca_file, root.cert_pem()).unwrap();
    let leaves = Arc::new(
        swg_ca::LeafCache::new(root.clone(), &swg_ca::LeafConfig::default(), &registry).unwrap(),
    );

    let policy_file = dir.path().join("acme.toml");
    std::fs::write(&policy_file, acme_text).unwrap();
    let mut policy_files = vec![policy_file.clone()];
    for (name, text) in others {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        policy_files.push(file);
    }
    let policy = swg_policy::PolicyWatcher::new(policy_files, &registry).unwrap();

    let activity = Arc::new(SqliteStore::open(&dir.path().join("activity.db")).unwrap());
    let secrets = Arc::new(SqliteSecretStore::open(&dir.path().join("console.db")).unwrap());
    let mut seeded = swg_console::seed_policy_tenants(secrets.as_ref(), &policy)
        .await
        .unwrap();
    assert_eq!(seeded.len(), policy.current().tenants().len());
    let (tenant, seeded) = seeded.remove(0);
    assert_eq!(tenant, "acme");
    let again = swg_console::seed_policy_tenants(secrets.as_ref(), &policy)
        .await
        .unwrap();
    assert!(again.is_empty());
    let read_only = NewAdminToken::generate("acme", Role::ReadOnly, unix_now());
    secrets.insert_admin_token(&read_only.record).await.unwrap();

    let signer = Signer::new(
        SigningKeys::from_secrets("test", &[("k1".to_owned(), vec![7u8; 32])]).unwrap(),
        &IdentityConfig::default(),
        &registry,
    )
    .unwrap();
    let live_keys = Arc::new(LiveKeys::new());
    live_keys.refresh(secrets.as_ref()).await.unwrap();

    let config = ConsoleConfig {
        header_timeout_secs: 2,
        request_timeout_secs: 3,
        ..ConsoleConfig::default()
    };
    let state = ConsoleState {
        config: Arc::new(config),
        signer: signer.clone(),
        live_keys,
        secrets: secrets.clone(),
        policy,
        activity: activity.clone(),
        root_certificate: Arc::new(root.certificate().clone()),
    };
    state.check_ready().await.unwrap();
    let tls = swg_console::tls_config(&leaves, "localhost").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    tokio::spawn(swg_console::serve(listener, tls, state, shutdown.clone()));

    Console {
        port,
        dir,
        ca_file,
        admin_token: seeded.admin_token.unwrap().token,
        read_only_token: read_only.token,
        authentication_key: seeded.authentication_key.unwrap().key,
        signer,
        secrets,
        activity,
        policy_file,
        shutdown,
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    content_type: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Console {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Calls the console with curl; `extra` contains further curl arguments.
    async fn call(&self, method: &str, path: &str, extra: &[&str]) -> Answer {
        let headers_file = self.dir.path().join(format!("headers-{}", rand_suffix()));
        let resolve = format!("localhost:{}:127.0.0.1", self.port);
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca_file)
            .args(["--resolve", &resolve, "-X", method, "-D"])
            .arg(&headers_file)
            .args(["-w", "\n%{http_code}"])
            .args(extra)
            .arg(self.url(path))
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut body = output.stdout;
        let newline = body.iter().rposition(|byte| *byte == b'\n').unwrap();
        let status = std::str::from_utf8(&body[newline + 1..])
            .unwrap()
            .parse()
            .unwrap();
        body.truncate(newline);
        let headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
        let content_type = headers
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.trim().to_owned())
            .next_back()
            .unwrap_or_default();
        Answer {
            status,
            body,
            content_type,
        }
    }

    async fn as_admin(&self, method: &str, path: &str, extra: &[&str]) -> Answer {
        let header = format!("Authorization: Bearer {}", self.admin_token);
        let mut args = vec!["-H", header.as_str()];
        args.extend_from_slice(extra);
        self.call(method, path, &args).await
    }

    async fn as_read_only(&self, method: &str, path: &str, extra: &[&str]) -> Answer {
        let header = format!("Authorization: Bearer {}", self.read_only_token);
        let mut args = vec!["-H", header.as_str()];
        args.extend_from_slice(extra);
        self.call(method, path, &args).await
    }

    async fn as_agent(&self, token: &str, method: &str, path: &str) -> Answer {
        let header = format!("Authorization: Bearer {token}");
        self.call(method, path, &["-H", &header]).await
    }

    async fn enroll(&self, key: &str, device: &str) -> Answer {
        let body = serde_json::json!({
            "authenticationKey": key,
            "deviceId": device,
            "userId": "alice@acme.example",
        })
        .to_string();
        self.call(
            "POST",
            "/api/agent/enroll",
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        )
        .await
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed).to_string()
}

#[tokio::test]
async fn enrolment_and_renewal_issue_tokens() {
    let console = start().await;
    let answer = console
        .enroll(&console.authentication_key, "device-1")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let enrolled = answer.json();
    let token = enrolled["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("v1.dt.k1."));
    assert_eq!(enrolled["tokenType"], "Bearer");
    assert_eq!(
        enrolled["endpoints"]["dohUrl"],
        "https://localhost:8053/dns-query"
    );
    let expires_at = enrolled["expiresAt"].as_u64().unwrap();
    assert!(expires_at.abs_diff(unix_now() + 24 * 3600) < 60);

    let renewed = console.as_agent(&token, "POST", "/api/agent/renew").await;
    assert_eq!(renewed.status, 200, "{}", renewed.text());
    let renewed_token = renewed.json()["token"].as_str().unwrap().to_owned();
    let settings = console
        .as_agent(&renewed_token, "GET", "/api/agent/settings")
        .await;
    assert_eq!(settings.status, 200);
    let settings = settings.json();
    assert_eq!(
        settings["additionalBrowsers"],
        serde_json::json!(["com.example.browser"])
    );
    assert_eq!(
        settings["trustedApplications"],
        serde_json::json!(["com.example.trusted"])
    );
    assert_eq!(
        settings["bypassedApplications"],
        serde_json::json!(["com.example.bypassed"])
    );
    assert!(settings["disablerPassword"]["current"]["salt"].is_string());
}

/// A key created outside this console (through another replica or `swg secrets`)
/// is not in the live-key snapshot yet. Enrolling with it must still give a
/// token that works at once.
#[tokio::test]
async fn key_created_elsewhere_gives_working_token() {
    use swg_identity::SecretStore;

    let console = start().await;
    let key = swg_identity::AuthenticationKey::generate("acme", unix_now());
    console
        .secrets
        .insert_authentication_key(&key)
        .await
        .unwrap();

    let answer = console.enroll(&key.key, "device-elsewhere").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let token = answer.json()["token"].as_str().unwrap().to_owned();
    let renewed = console.as_agent(&token, "POST", "/api/agent/renew").await;
    assert_eq!(renewed.status, 200, "{}", renewed.text());
}

/// A key of a tenant that is not in the policy in force gives no device token,
/// since the resolver and the proxy would refuse it.
#[tokio::test]
async fn tenant_outside_policy_gets_no_token() {
    use swg_identity::SecretStore;

    let console = start().await;
    let key = swg_identity::AuthenticationKey::generate("globex", unix_now());
    console
        .secrets
        .insert_authentication_key(&key)
        .await
        .unwrap();

    let answer = console.enroll(&key.key, "device-globex").await;
    assert_eq!(answer.status, 409, "{}", answer.text());
    let error = answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("not in the policy"), "{error}");
}

#[tokio::test]
async fn enrolment_rejections_share_one_message() {
    let console = start().await;
    let wrong_key = console.enroll("swgk_not-a-key", "device-1").await;
    assert_eq!(wrong_key.status, 401);
    assert_eq!(wrong_key.json()["error"], swg_console::UNAUTHORIZED_MESSAGE);

    let token = console
        .signer
        .issue_device_token("acme", "d", "u", "gone", unix_now())
        .token;
    let revoked = console.as_agent(&token, "POST", "/api/agent/renew").await;
    assert_eq!(revoked.status, 401);
    assert_eq!(revoked.json()["error"], swg_console::UNAUTHORIZED_MESSAGE);
}

#[tokio::test]
async fn agent_token_rejections_are_401() {
    let console = start().await;
    let enrolled = console
        .enroll(&console.authentication_key, "device-1")
        .await
        .json();
    let token = enrolled["token"].as_str().unwrap().to_owned();
    let key_id = console
        .secrets
        .list_authentication_keys("acme")
        .await
        .unwrap()[0]
        .id
        .clone();

    let expired = console
        .signer
        .issue_device_token("acme", "d", "u", &key_id, unix_now() - 25 * 3600)
        .token;
    let mut tampered = token.clone();
    tampered.insert(12, 'x');
    let truncated = token[..token.len() - 5].to_owned();
    let oversized = format!("v1.dt.k1.{}.AAAA", "A".repeat(5000));
    let cookie = console.signer.issue_identity_cookie(
        &swg_identity::Identity {
            tenant: "acme".to_owned(),
            device: "d".to_owned(),
            user: "u".to_owned(),
            app_bundle_id: None,
            app_class: swg_identity::AppClass::Browser,
            discovery: swg_identity::Discovery::Cookie,
        },
        "localhost",
        unix_now(),
    );
    for bad in [&expired, &tampered, &truncated, &oversized, &cookie] {
        let answer = console.as_agent(bad, "GET", "/api/agent/settings").await;
        assert_eq!(answer.status, 401, "{bad:.30}");
    }

    let doubled = format!("Authorization: Bearer {token}");
    let answer = console
        .call(
            "GET",
            "/api/agent/settings",
            &["-H", &doubled, "-H", &doubled],
        )
        .await;
    assert_eq!(answer.status, 401);
    let missing = console.call("GET", "/api/agent/settings", &[]).await;
    assert_eq!(missing.status, 401);
    let basic = format!("Authorization: Basic {token}");
    let answer = console
        .call("GET", "/api/agent/settings", &["-H", &basic])
        .await;
    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn key_rotation_keeps_second_key_working() {
    let console = start().await;
    let created = console.as_admin("POST", "/api/keys", &[]).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let second_key = created.json()["key"].as_str().unwrap().to_owned();

    let listed = console.as_admin("GET", "/api/keys", &[]).await.json();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let first_id = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["key"] == console.authentication_key.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let first_token = console
        .enroll(&console.authentication_key, "d1")
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_token = console.enroll(&second_key, "d2").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let deleted = console
        .as_admin("DELETE", &format!("/api/keys/{first_id}"), &[])
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let again = console
        .as_admin("DELETE", &format!("/api/keys/{first_id}"), &[])
        .await;
    assert_eq!(again.status, 404);

    assert_eq!(
        console
            .enroll(&console.authentication_key, "d3")
            .await
            .status,
        401
    );
    assert_eq!(
        console
            .as_agent(&first_token, "POST", "/api/agent/renew")
            .await
            .status,
        401
    );
    assert_eq!(
        console
            .as_agent(&second_token, "POST", "/api/agent/renew")
            .await
            .status,
        200
    );
    assert_eq!(console.enroll(&second_key, "d4").await.status, 200);
}

#[tokio::test]
async fn disabler_rotation_keeps_previous_hash() {
    let console = start().await;
    let before = console
        .as_admin("GET", "/api/disabler-password", &[])
        .await
        .json();
    let first = before["current"]["password"].as_str().unwrap().to_owned();

    let generated = console
        .as_admin("POST", "/api/disabler-password", &[])
        .await;
    assert_eq!(generated.status, 201);
    let generated = generated.json();
    let second = generated["current"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(generated["previous"]["password"], first.as_str());

    let token = console
        .enroll(&console.authentication_key, "d1")
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let settings = console
        .as_agent(&token, "GET", "/api/agent/settings")
        .await
        .json();
    for (slot, password) in [("current", &second), ("previous", &first)] {
        let hash = &settings["disablerPassword"][slot];
        let mut input = hex::decode(hash["salt"].as_str().unwrap()).unwrap();
        input.extend_from_slice(password.as_bytes());
        assert_eq!(
            hash["sha256"].as_str().unwrap(),
            swg_identity::sha256_hex(&input),
            "{slot}"
        );
    }
    assert!(!settings.to_string().contains(&second));
}

#[tokio::test]
async fn read_only_token_cannot_change_anything() {
    let console = start().await;
    assert_eq!(
        console.as_read_only("GET", "/api/keys", &[]).await.status,
        200
    );
    assert_eq!(
        console.as_read_only("GET", "/api/policy", &[]).await.status,
        200
    );
    let changes = [
        ("POST", "/api/keys"),
        ("DELETE", "/api/keys/anything"),
        ("POST", "/api/disabler-password"),
        ("PUT", "/api/policy"),
    ];
    for (method, path) in changes {
        let answer = console
            .as_read_only(method, path, &["--http1.1", "--data-binary", ACME_POLICY])
            .await;
        assert_eq!(answer.status, 403, "{method} {path}");
    }
    let keys = console
        .secrets
        .list_authentication_keys("acme")
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let wrong = console
        .call(
            "GET",
            "/api/keys",
            &["-H", "Authorization: Bearer swga_wrong"],
        )
        .await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn certificate_downloads_parse_with_openssl() {
    let console = start().await;
    for (format, openssl_form) in [("pem", "PEM"), ("der", "DER")] {
        let answer = console
            .as_admin("GET", &format!("/api/certificate?format={format}"), &[])
            .await;
        assert_eq!(answer.status, 200);
        let file = console.dir.path().join(format!("download.{format}"));
        std::fs::write(&file, &answer.body).unwrap();
        let output = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-inform",
                openssl_form,
                "-in",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&console.ca_file)
            .output()
            .unwrap();
        assert_eq!(output.stdout, expected.stdout, "{format}");
    }

    let profile = console
        .as_admin("GET", "/api/certificate?format=mobileconfig", &[])
        .await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.content_type, "application/x-apple-aspen-config");
    let checked = python_plist(
        &console.dir.path().join("root.mobileconfig"),
        &profile.body,
        "payload = plist['PayloadContent'][0]\n\
         assert payload['PayloadType'] == 'com.apple.security.root', payload['PayloadType']\n\
         open(sys.argv[1] + '.der', 'wb').write(payload['PayloadContent'])\n\
         print(len(payload['PayloadContent']))",
    );
    assert!(checked.trim().parse::<usize>().unwrap() > 100);
    let embedded = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-inform",
            "DER",
            "-in",
        ])
        .arg(console.dir.path().join("root.mobileconfig.der"))
        .output()
        .unwrap();
    let expected = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&console.ca_file)
        .output()
        .unwrap();
    assert!(embedded.status.success());
    assert_eq!(embedded.stdout, expected.stdout);

    let unknown = console
        .as_admin("GET", "/api/certificate?format=p12", &[])
        .await;
    assert_eq!(unknown.status, 400);
}

/// Parses `bytes` with python3's plistlib and runs `script` with `plist` bound;
/// returns what the script prints.
fn python_plist(file: &Path, bytes: &[u8], script: &str) -> String {
    std::fs::write(file, bytes).unwrap();
    let program = format!(
        "import plistlib, sys\nwith open(sys.argv[1], 'rb') as f:\n    plist = plistlib.load(f)\n{script}\n"
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &program])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn mdm_profiles_carry_vendor_placeholders() {
    let console = start().await;
    for mdm in swg_console::Mdm::ALL {
        let answer = console
            .as_admin("GET", &format!("/api/mdm-profile?mdm={}", mdm.name()), &[])
            .await;
        assert_eq!(answer.status, 200, "{}: {}", mdm.name(), answer.text());
        let (user, device) = mdm.placeholders();
        let script = format!(
            "payload = plist['PayloadContent'][0]\n\
             assert plist['PayloadType'] == 'Configuration'\n\
             assert payload['PayloadType'] == 'com.apple.dnsProxy.managed'\n\
             assert payload['AppBundleIdentifier'] == 'com.mimecast.SecurityAgent'\n\
             assert payload['ProviderBundleIdentifier'] == 'com.mimecast.SecurityAgent.DNSProvider'\n\
             config = payload['ProviderConfiguration']\n\
             assert config['userId'] == {user:?}, config['userId']\n\
             assert config['deviceId'] == {device:?}, config['deviceId']\n\
             assert config['authenticationKey'] == {key:?}\n\
             assert config['additionalBrowsers'] == ['com.example.browser']\n\
             assert config['trustedApplications'] == ['com.example.trusted']\n\
             assert config['bypassedApplications'] == ['com.example.bypassed']\n\
             assert config['dohUrl'] == 'https://localhost:8053/dns-query'\n\
             print('ok')",
            key = console.authentication_key,
        );
        let file = console
            .dir
            .path()
            .join(format!("{}.mobileconfig", mdm.name()));
        assert_eq!(
            python_plist(&file, &answer.body, &script).trim(),
            "ok",
            "{}",
            mdm.name()
        );
    }
    let unknown = console
        .as_admin("GET", "/api/mdm-profile?mdm=jamf", &[])
        .await;
    assert_eq!(unknown.status, 400);
}

#[tokio::test]
async fn csv_export_escapes_cells() {
    let console = start().await;
    let mut event = swg_activity::Event::new(
        "acme",
        swg_activity::Via::Proxy,
        "https://blocked.example/a,b?q=\"x\"",
        swg_activity::Action::Block,
    );
    event.user = Some("alice, \"the admin\"".to_owned());
    event.reason = "line one\nline two".to_owned();
    event.device = Some("device-1".to_owned());
    console.activity.insert_batch(&[event]).unwrap();

    let answer = console
        .as_admin("GET", "/api/activity/export.csv", &[])
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/csv"));
    let text = answer.text();
    assert!(text.starts_with("time,tenant,user,device"), "{text}");
    assert!(text.contains("\"alice, \"\"the admin\"\"\""), "{text}");
    assert!(
        text.contains("\"https://blocked.example/a,b?q=\"\"x\"\"\""),
        "{text}"
    );
    let limited = console
        .as_admin("GET", "/api/activity/export.csv?limit=1", &[])
        .await;
    assert_eq!(limited.status, 400, "{}", limited.text());

    let page = console
        .as_admin("GET", "/api/activity?action=block", &[])
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["events"].as_array().unwrap().len(), 1);
    let mut served: Vec<String> = page.json()["events"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    served.sort();
    assert_eq!(served, documented_event_fields());

    // The agent sees the events of its own user on its device, not another user's.
    let mut own = swg_activity::Event::new(
        "acme",
        swg_activity::Via::Dns,
        "warned.example",
        swg_activity::Action::Warn,
    );
    own.user = Some("alice@acme.example".to_owned());
    own.device = Some("device-1".to_owned());
    console.activity.insert_batch(&[own]).unwrap();
    let token = console
        .enroll(&console.authentication_key, "device-1")
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = console
        .as_agent(&token, "GET", "/api/agent/activity")
        .await
        .json();
    let events = mine["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{mine}");
    assert_eq!(events[0]["user"], "alice@acme.example");
    let summary = console.as_admin("GET", "/api/activity/summary", &[]).await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    assert_eq!(summary.json()["topBlockedDomains"][0]["count"], 1);
    let day = summary.json()["dailyTotals"][0]["day"].clone();
    let day = day.as_str().unwrap_or_default().to_owned();
    assert_eq!(day.len(), 10, "days are YYYY-MM-DD: {}", summary.text());
    assert_eq!(&day[4..5], "-", "{day}");
    for range in ["from=-2026-01-01", "to=+2026-01-01", "from=2026-1-1"] {
        let bad_day = console
            .as_admin("GET", &format!("/api/activity/summary?{range}"), &[])
            .await;
        assert_eq!(bad_day.status, 400, "{range}: {}", bad_day.text());
    }
    let bad = console
        .as_admin("GET", "/api/activity?action=explode", &[])
        .await;
    assert_eq!(bad.status, 400);
    let error = bad.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("unknown action \"explode\"; use one of allow, block,"),
        "{error}"
    );
    assert!(error.contains("bypass-ip"), "{error}");
    assert!(!error.contains("Action"), "{error}");
}

#[tokio::test]
async fn agent_activity_returns_own_user_alerts_only() {
    use swg_activity::Action;

    let console = start().await;
    let now = time::OffsetDateTime::now_utc();
    let alert = |host: &str, action: Action, user: &str, device: &str, minutes_ago: i64| {
        let mut event = swg_activity::Event::new("acme", swg_activity::Via::Dns, host, action);
        event.user = Some(user.to_owned());
        event.device = Some(device.to_owned());
        event.time = now - time::Duration::minutes(minutes_ago);
        event
    };
    let alice = "alice@acme.example";
    let bob = "bob@acme.example";
    let events = [
        alert(
            "expired.example",
            Action::Block,
            alice,
            "device-1",
            31 * 24 * 60,
        ),
        alert("older-block.example", Action::Block, alice, "device-1", 180),
        alert("warned.example", Action::Warn, alice, "device-1", 120),
        alert("newer-block.example", Action::Block, alice, "device-1", 60),
        alert("bob.example", Action::Block, bob, "device-1", 30),
        alert("allowed.example", Action::Allow, alice, "device-1", 20),
        alert("other-device.example", Action::Block, alice, "device-2", 10),
    ];
    console.activity.insert_batch(&events).unwrap();
    let token = console
        .enroll(&console.authentication_key, "device-1")
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = console.as_agent(&token, "GET", "/api/agent/activity").await;

    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    let hosts: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["request"].as_str().unwrap())
        .collect();
    assert!(
        !hosts.contains(&"bob.example"),
        "another user's event: {hosts:?}"
    );
    assert!(
        !hosts.contains(&"allowed.example"),
        "an allow event: {hosts:?}"
    );
    assert!(
        !hosts.contains(&"other-device.example"),
        "another device's event: {hosts:?}"
    );
    assert!(
        !hosts.contains(&"expired.example"),
        "an event older than 30 days: {hosts:?}"
    );
    assert_eq!(
        hosts,
        vec![
            "newer-block.example",
            "warned.example",
            "older-block.example"
        ]
    );
}

#[tokio::test]
async fn bad_query_strings_get_json_400() {
    let console = start().await;
    for path in [
        "/api/activity?limit=abc",
        "/api/activity?limit=0",
        "/api/activity?limit=1001",
        "/api/activity?unknown=1",
        "/api/certificate?format=pem&format=der",
        "/api/mdm-profile?mdm=generic&mdm=intune",
    ] {
        let answer = console.as_admin("GET", path, &[]).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        assert!(
            answer.json()["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{path}: {}",
            answer.text()
        );
    }
    let repeated = console
        .as_admin("GET", "/api/certificate?format=pem&format=der", &[])
        .await;
    assert_eq!(
        repeated.json()["error"],
        "invalid query string: duplicate field `format`"
    );
}

#[tokio::test]
async fn bad_limit_gets_range_message() {
    let console = start().await;
    for (path, max) in [
        ("/api/activity?limit=-1", 1000),
        ("/api/activity?limit=abc", 1000),
        ("/api/activity?limit=1.5", 1000),
        ("/api/activity?limit=99999999999999999999999", 1000),
        ("/api/activity/summary?limit=-1", 100),
        ("/api/activity/summary?limit=101", 100),
    ] {
        let answer = console.as_admin("GET", path, &[]).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with(&format!(
                "limit must be a whole number from 1 to {max}, not "
            )),
            "{path}: {error}"
        );
    }
    let good = console
        .as_admin("GET", "/api/activity/summary?limit=100", &[])
        .await;
    assert_eq!(good.status, 200, "{}", good.text());
}

#[tokio::test]
async fn policy_replace_is_validated_and_atomic() {
    let console = start().await;
    let invalid = "id = \"acme\"\n[[policies]]\nid = 5\n";
    let answer = console
        .as_admin("PUT", "/api/policy", &["--data-binary", invalid])
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(answer.json()["diagnostics"][0]["line"].as_u64().unwrap() > 0);
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );

    let validate = console
        .as_admin(
            "POST",
            "/api/policy/validate",
            &["--data-binary", ACME_POLICY],
        )
        .await;
    assert_eq!(validate.status, 200, "{}", validate.text());

    let replacement = ACME_POLICY.replace("blocked.example", "other.example");
    let json = console
        .as_admin(
            "PUT",
            "/api/policy",
            &[
                "-H",
                "content-type: application/json",
                "--data-binary",
                &replacement,
            ],
        )
        .await;
    assert_eq!(json.status, 415, "{}", json.text());
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );
    let answer = console
        .as_admin("PUT", "/api/policy", &["--data-binary", &replacement])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        replacement
    );

    let explain = console
        .as_admin(
            "POST",
            "/api/policy/explain",
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                r#"{"domain":"www.other.example"}"#,
            ],
        )
        .await;
    assert_eq!(explain.status, 200, "{}", explain.text());
    assert_eq!(explain.json()["action"], "block");

    for (body, status, action) in [
        (r#"{"domain":"mask.icloud.com"}"#, 200, Some("block")),
        (r#"{"domain":"bad domain"}"#, 400, None),
        (r#"{"domain":"https://www.other.example/"}"#, 400, None),
        (r#"{"url":"ftp://www.other.example/"}"#, 400, None),
        (r#"{"url":"www.other.example"}"#, 400, None),
    ] {
        let answer = console
            .as_admin(
                "POST",
                "/api/policy/explain",
                &[
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body,
                ],
            )
            .await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text());
        if let Some(action) = action {
            assert_eq!(answer.json()["action"], action, "{body}");
        }
    }
}

/// Builds a policy file with acme and globex. acme's admin must never see globex's
/// groups, user ids, networks or feeds.
fn acme_and_globex_in_one_file(globex_feed: &Path) -> String {
    format!(
        r#"
[[tenants]]
id = "acme"

[[tenants.policies]]
id = "everyone"

[[tenants]]
id = "globex"

[[tenants.locations]]
id = "globex-office"
cidrs = ["10.20.0.0/16"]

[[tenants.groups]]
id = "globex-board"
users = ["ceo@globex.example"]

[[tenants.feeds]]
id = "globex-private"
path = {globex_feed:?}
format = "domains"
category = "malware"

[[tenants.policies]]
id = "everyone"
"#
    )
}

#[tokio::test]
async fn policy_in_shared_file_is_not_served() {
    let feeds = tempfile::tempdir().unwrap();
    let globex_feed = feeds.path().join("globex-secret.txt");
    std::fs::write(&globex_feed, "globex-internal-merger-target.example\n").unwrap();
    let console = start_with_policies(&acme_and_globex_in_one_file(&globex_feed), &[]).await;

    for answer in [
        console.as_admin("GET", "/api/policy", &[]).await,
        console.as_read_only("GET", "/api/policy", &[]).await,
    ] {
        assert_eq!(answer.status, 409, "{}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("shared with other tenants"), "{error}");
        assert!(error.contains("managed on the server"), "{error}");
        assert!(error.contains("cannot be read through the API"), "{error}");
        for secret in [
            "globex",
            "ceo@",
            "10.20.",
            "secret",
            "[[tenants",
            ".toml",
            "/",
        ] {
            assert!(
                !answer.text().contains(secret),
                "{secret}: {}",
                answer.text()
            );
        }
    }

    // Validation applies the check that replacement applies.
    let validate = console
        .as_admin(
            "POST",
            "/api/policy/validate",
            &["--data-binary", ACME_POLICY],
        )
        .await;
    assert_eq!(validate.status, 409, "{}", validate.text());
    assert!(!validate.text().contains("globex"), "{}", validate.text());
}

/// Returns the action that `POST /api/policy/explain` reports for `domain`.
async fn explained_action(console: &Console, domain: &str) -> String {
    let body = serde_json::json!({ "domain": domain }).to_string();
    let answer = console
        .as_admin(
            "POST",
            "/api/policy/explain",
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{domain}: {}", answer.text());
    answer.json()["action"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn uploaded_policy_names_only_feeds_in_force() {
    let feeds = tempfile::tempdir().unwrap();
    let own_feed = feeds.path().join("acme-malware.txt");
    std::fs::write(&own_feed, "malware.acme-list.example\n").unwrap();
    let unassigned = feeds.path().join("unassigned.txt");
    std::fs::write(&unassigned, "unassigned.example\n").unwrap();
    let acme = format!(
        "{ACME_POLICY}\n[[feeds]]\nid = \"own\"\npath = {own_feed:?}\nformat = \"domains\"\ncategory = \"malware\"\n"
    );
    let console = start_with_policies(&acme, &[("globex.toml", GLOBEX_POLICY)]).await;
    let folder = console.dir.path().join("feeds");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("globex-secret.txt"),
        "globex-internal-merger-target.example\n",
    )
    .unwrap();

    // The policy in force, read and uploaded unchanged, keeps its own feed.
    let current = console.as_admin("GET", "/api/policy", &[]).await;
    assert_eq!(current.status, 200, "{}", current.text());
    assert_eq!(current.text(), acme);
    let again = console
        .as_admin("PUT", "/api/policy", &["--data-binary", &current.text()])
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        explained_action(&console, "malware.acme-list.example").await,
        "block"
    );

    // Any other path gets the same response, whether or not the file exists and
    // however the path is spelled: another tenant's feed or policy file, relative or
    // absolute, a file the tenant was never given, a missing file.
    let globex_absolute = console.dir.path().join("globex.toml");
    let secret_absolute = folder.join("globex-secret.txt");
    let mut messages = Vec::new();
    for path in [
        "feeds/globex-secret.txt",
        secret_absolute.to_str().unwrap(),
        "globex.toml",
        globex_absolute.to_str().unwrap(),
        "./feeds/../globex.toml",
        unassigned.to_str().unwrap(),
        "feeds/missing.txt",
        "/etc/hostname",
    ] {
        let text = format!(
            "{ACME_POLICY}\n[[feeds]]\nid = \"steal\"\npath = {path:?}\nformat = \"domains\"\ncategory = \"malware\"\n"
        );
        for (method, route) in [("POST", "/api/policy/validate"), ("PUT", "/api/policy")] {
            let answer = console
                .as_admin(method, route, &["--data-binary", &text])
                .await;
            assert_eq!(answer.status, 422, "{method} {path}: {}", answer.text());
            let body = answer.json();
            let diagnostics = body["diagnostics"].as_array().unwrap();
            assert_eq!(diagnostics.len(), 1, "{method} {path}: {body}");
            let message = diagnostics[0]["message"].as_str().unwrap();
            assert!(message.contains("feed `steal`"), "{message}");
            assert!(
                message.contains("only the feed files that the policy in force"),
                "{message}"
            );
            messages.push(message.to_owned());
        }
    }
    assert!(
        messages.iter().all(|message| *message == messages[0]),
        "{messages:#?}"
    );

    assert_eq!(
        explained_action(&console, "globex-internal-merger-target.example").await,
        "allow"
    );
    assert_eq!(
        explained_action(&console, "unassigned.example").await,
        "allow"
    );
    assert_eq!(std::fs::read_to_string(&console.policy_file).unwrap(), acme);
}

#[tokio::test]
async fn policy_validate_applies_put_overlap_check() {
    let console = start_with_other_tenants(&[("globex.toml", GLOBEX_WITH_LOCATION)]).await;
    let overlap = ACME_POLICY.replace(
        "[[policies]]",
        "[[locations]]\nid = \"hq\"\ncidrs = [\"10.1.2.0/24\"]\n\n[[policies]]",
    );

    for (method, route) in [("POST", "/api/policy/validate"), ("PUT", "/api/policy")] {
        let answer = console
            .as_admin(method, route, &["--data-binary", &overlap])
            .await;
        assert_eq!(answer.status, 422, "{method}: {}", answer.text());
        let body = answer.json();
        let diagnostics = body["diagnostics"].as_array().unwrap();
        assert_eq!(diagnostics.len(), 1, "{method}: {body}");
        assert_eq!(diagnostics[0]["line"], 9, "{method}: {body}");
        let message = diagnostics[0]["message"].as_str().unwrap();
        assert!(
            message
                .contains("location `hq` network 10.1.2.0/24 overlaps a network of another tenant"),
            "{method}: {message}"
        );
        for secret in ["globex", "10.1.0.0", "another policy file", "office"] {
            assert!(
                !answer.text().contains(secret),
                "{method} {secret}: {message}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );
}

/// A tracing subscriber that keeps every event of the thread it is the default of,
/// as one line of `field=value` pairs.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                line.push_str(&format!("{}={value:?} ", field.name()));
            },
        );
        self.0.lock().unwrap().push(line);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn invalid_other_file_is_named_in_log() {
    let capture = LogCapture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let console = start_with_other_tenants(&[("globex.toml", GLOBEX_POLICY)]).await;
    let globex_file = console.dir.path().join("globex.toml");
    std::fs::write(&globex_file, "id = \"globex\"\nsecret_setting = 1\n").unwrap();

    let replacement = ACME_POLICY.replace("blocked.example", "other.example");
    for (method, route) in [("PUT", "/api/policy"), ("POST", "/api/policy/validate")] {
        capture.0.lock().unwrap().clear();
        let answer = console
            .as_admin(method, route, &["--data-binary", &replacement])
            .await;
        assert_eq!(answer.status, 500, "{method}: {}", answer.text());
        assert!(!answer.text().contains("globex"), "{}", answer.text());
        assert!(
            !answer.text().contains("secret_setting"),
            "{}",
            answer.text()
        );

        let lines = capture.0.lock().unwrap().clone();
        let line = lines
            .iter()
            .find(|line| line.contains("other policy files"))
            .unwrap_or_else(|| panic!("{method}: {lines:#?}"));
        assert!(
            line.contains(&globex_file.display().to_string()),
            "{method}: {line}"
        );
        assert!(line.contains("2:1"), "{method}: {line}");
        assert!(line.contains("secret_setting"), "{method}: {line}");
        assert!(!line.contains('\n'), "{method}: {line}");
    }
}

const GLOBEX_POLICY: &str = r#"
id = "globex"

[[policies]]
id = "everyone"
"#;

#[tokio::test]
async fn policy_with_other_tenant_id_gets_400() {
    let console = start_with_other_tenants(&[("globex.toml", GLOBEX_POLICY)]).await;
    let folder = console.dir.path().to_str().unwrap().to_owned();

    // "globex" is another tenant's id and "nobody" is no tenant's id. Both responses
    // must be the same, so that an admin cannot probe which tenant ids exist.
    let mut errors = Vec::new();
    for id in ["globex", "nobody"] {
        let text = ACME_POLICY.replace("id = \"acme\"", &format!("id = \"{id}\""));
        for (method, path) in [("PUT", "/api/policy"), ("POST", "/api/policy/validate")] {
            let answer = console
                .as_admin(method, path, &["--data-binary", &text])
                .await;
            assert_eq!(
                answer.status,
                400,
                "{method} {path}, id {id}: {}",
                answer.text()
            );
            let error = answer.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains("own tenant id \"acme\""), "{error}");
            assert!(!error.contains(".toml"), "{error}");
            assert!(!error.contains(&folder), "{error}");
            errors.push(error.replace(id, "ID"));
        }
    }
    assert!(
        errors.iter().all(|error| *error == errors[0]),
        "{errors:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );
}

#[tokio::test]
async fn policy_put_hides_other_files_diagnostics() {
    let console = start_with_other_tenants(&[("globex.toml", GLOBEX_POLICY)]).await;
    // globex's file becomes invalid on disk. The watcher has not loaded it, so
    // globex's last valid policy stays in force, but acme's replacement is checked
    // against the files on disk and cannot be installed.
    std::fs::write(
        console.dir.path().join("globex.toml"),
        "id = \"globex\"\nsecret_setting = 1\n",
    )
    .unwrap();

    let replacement = ACME_POLICY.replace("blocked.example", "other.example");
    let answer = console
        .as_admin("PUT", "/api/policy", &["--data-binary", &replacement])
        .await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert!(answer.json()["diagnostics"].is_null(), "{}", answer.text());
    assert!(
        !answer.text().contains("secret_setting"),
        "{}",
        answer.text()
    );
    assert!(!answer.text().contains("globex"), "{}", answer.text());
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );
}

#[tokio::test]
async fn bad_requests_get_clear_4xx() {
    let console = start().await;
    let json = ["-H", "Content-Type: application/json"];
    let cases: [(&[&str], u16); 5] = [
        (&[json[0], json[1], "--data-binary", "{not json"], 400),
        (
            &[
                json[0],
                json[1],
                "--data-binary",
                r#"{"authenticationKey":"k","deviceId":"d","userId":"u","extra":1}"#,
            ],
            422,
        ),
        (
            &["-H", "Content-Type: text/plain", "--data-binary", "{}"],
            415,
        ),
        (
            &[
                json[0],
                json[1],
                "--data-binary",
                r#"{"authenticationKey":"k","deviceId":"","userId":"u"}"#,
            ],
            400,
        ),
        (
            &[
                json[0],
                json[1],
                "--data-binary",
                r#"{"authenticationKey":"k","deviceId":"   ","userId":"u"}"#,
            ],
            400,
        ),
    ];
    for (args, status) in cases {
        let answer = console.call("POST", "/api/agent/enroll", args).await;
        assert_eq!(answer.status, status, "{args:?}: {}", answer.text());
        assert!(answer.json()["error"].is_string());
    }

    // A body over the limit gets 413 from its Content-Length alone, before it is
    // sent; a raw client shows that without racing curl's upload.
    let mut tls = connect_tls(&console).await;
    let request = "POST /api/agent/enroll HTTP/1.1\r\nHost: localhost\r\n\
                   Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{";
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let count = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buffer))
        .await
        .expect("no response within 5 s")
        .unwrap();
    let response = String::from_utf8_lossy(&buffer[..count]).into_owned();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // A chunked body has no declared length, so the limit is found while reading;
    // its message names the limit too.
    let tls = connect_tls(&console).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let sender = tokio::spawn(async move {
        let head = "POST /api/agent/enroll HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                    200000\r\n";
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&vec![b' '; 0x20_0000]).await
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut response))
        .await
        .expect("no response within 5 s");
    sender.abort();
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(response.starts_with("HTTP/1.1 413"), "{read:?}: {response}");
    assert!(
        response.contains("the body exceeds the limit of "),
        "{response}"
    );

    let traversal = console
        .as_admin("GET", "/api/../../etc/passwd", &["--path-as-is"])
        .await;
    assert_eq!(traversal.status, 404);
    let encoded = console
        .as_admin("DELETE", "/api/keys/..%2F..%2Fetc", &[])
        .await;
    assert_eq!(encoded.status, 404);
    let wrong_method = console.as_admin("PATCH", "/api/keys", &[]).await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test]
async fn json_bodies_must_be_objects() {
    let console = start().await;
    let json = "Content-Type: application/json";

    // serde would read these arrays as the request structs, field by field.
    let enrolment = format!(
        r#"["{}","device-1","alice@acme.example"]"#,
        console.authentication_key
    );
    let answer = console
        .call(
            "POST",
            "/api/agent/enroll",
            &["-H", json, "--data-binary", &enrolment],
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(
        answer.json()["error"],
        "the request body must be a JSON object, not an array"
    );
    assert!(answer.json()["token"].is_null());

    let explain = console
        .as_admin(
            "POST",
            "/api/policy/explain",
            &[
                "-H",
                json,
                "--data-binary",
                r#"[null,"www.blocked.example"]"#,
            ],
        )
        .await;
    assert_eq!(explain.status, 400, "{}", explain.text());
    assert_eq!(
        explain.json()["error"],
        "the request body must be a JSON object, not an array"
    );

    let before = console
        .secrets
        .list_admin_tokens("acme")
        .await
        .unwrap()
        .len();
    let created = console
        .as_admin(
            "POST",
            "/api/admin-tokens",
            &["-H", json, "--data-binary", r#"["read_only"]"#],
        )
        .await;
    assert_eq!(created.status, 400, "{}", created.text());
    assert_eq!(
        console
            .secrets
            .list_admin_tokens("acme")
            .await
            .unwrap()
            .len(),
        before
    );

    for (body, kind) in [
        (r#""text""#, "a string"),
        ("5", "a number"),
        ("true", "a boolean"),
        (" null ", "null"),
    ] {
        let answer = console
            .call(
                "POST",
                "/api/agent/enroll",
                &["-H", json, "--data-binary", body],
            )
            .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert_eq!(
            answer.json()["error"],
            format!("the request body must be a JSON object, not {kind}"),
            "{body}"
        );
    }

    // Invalid JSON and a wrong field keep their own messages, and an object still
    // reaches the handler.
    let broken = console
        .call(
            "POST",
            "/api/agent/enroll",
            &["-H", json, "--data-binary", "[1,"],
        )
        .await;
    assert_eq!(broken.status, 400, "{}", broken.text());
    assert!(
        broken.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Failed to parse the request body as JSON"),
        "{}",
        broken.text()
    );
    let wrong_field = console
        .call(
            "POST",
            "/api/agent/enroll",
            &[
                "-H",
                json,
                "--data-binary",
                r#"{"authenticationKey":"k","deviceId":5,"userId":"u"}"#,
            ],
        )
        .await;
    assert_eq!(wrong_field.status, 422, "{}", wrong_field.text());
    assert!(
        wrong_field.json()["error"]
            .as_str()
            .unwrap()
            .contains("deviceId: invalid type: integer `5`"),
        "{}",
        wrong_field.text()
    );
    let object = console
        .enroll(&console.authentication_key, "device-1")
        .await;
    assert_eq!(object.status, 200, "{}", object.text());
}

/// Opens a TLS connection to the console over HTTP/1.1 (no ALPN).
async fn connect_tls(console: &Console) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", console.port))
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&console.ca_file).unwrap();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(swg_ca::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(server_name, stream).await.unwrap()
}

#[tokio::test]
async fn slow_client_is_disconnected() {
    let console = start().await;
    let mut tls = connect_tls(&console).await;

    // Headers that never end: the server must close within its header timeout.
    tls.write_all(b"GET /api/keys HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let console = start().await;
    let document =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .unwrap();
    let documented = documented_operations(&document);
    let mut served: Vec<(String, String)> = swg_console::route_table()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_lowercase(), path.to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);

    // Each documented operation reaches a handler: without credentials it gets
    // 401 (or 415 for enrolment, which has no credentials), never 404 or 405.
    for (method, path) in &documented {
        let path = path.replace("{id}", "some-id");
        let answer = console.call(&method.to_uppercase(), &path, &[]).await;
        assert!(
            matches!(answer.status, 401 | 415),
            "{method} {path}: {}",
            answer.status
        );
    }
}

/// Returns the sorted property names of the `ActivityEvent` schema in
/// docs/openapi.yaml, which is written with two-space indentation.
fn documented_event_fields() -> Vec<String> {
    let document =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .unwrap();
    let mut fields: Vec<String> = document
        .lines()
        .skip_while(|line| *line != "    ActivityEvent:")
        .skip(1)
        .take_while(|line| line.starts_with("      "))
        .filter_map(|line| line.strip_prefix("        "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_once(':').map(|(name, _)| name.to_owned()))
        .collect();
    fields.sort();
    fields
}

/// Returns the sorted `(method, path)` pairs under `paths:` of an OpenAPI YAML
/// document written with two-space indentation.
fn documented_operations(document: &str) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in document.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths {
            continue;
        }
        if !line.starts_with(' ') && !line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("  ") {
            if !rest.starts_with(' ') && rest.ends_with(':') {
                path = rest.trim_end_matches(':').to_owned();
                continue;
            }
            if let Some(method) = rest.strip_prefix("  ") {
                let method = method.trim_end_matches(':');
                if ["get", "post", "put", "delete", "patch"].contains(&method) {
                    operations.push((method.to_owned(), path.clone()));
                }
            }
        }
    }
    operations.sort();
    operations
}

#[tokio::test]
async fn admin_token_sees_only_its_tenant() {
    let console = start().await;
    let globex = NewAdminToken::generate("globex", Role::Admin, unix_now());
    console
        .secrets
        .insert_admin_token(&globex.record)
        .await
        .unwrap();
    let header = format!("Authorization: Bearer {}", globex.token);

    let listed = console.call("GET", "/api/keys", &["-H", &header]).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["keys"], serde_json::json!([]));

    let acme_key = console
        .secrets
        .list_authentication_keys("acme")
        .await
        .unwrap()[0]
        .id
        .clone();
    let deleted = console
        .call("DELETE", &format!("/api/keys/{acme_key}"), &["-H", &header])
        .await;
    assert_eq!(deleted.status, 404);
    assert_eq!(
        console
            .secrets
            .list_authentication_keys("acme")
            .await
            .unwrap()
            .len(),
        1
    );

    let policy = console.call("GET", "/api/policy", &["-H", &header]).await;
    assert_eq!(policy.status, 404);
}

#[tokio::test]
async fn slow_body_gets_408() {
    let console = start().await;
    let mut tls = connect_tls(&console).await;

    // A body announced but never sent: the request time limit (3 s here) answers.
    let request = "POST /api/agent/enroll HTTP/1.1\r\nHost: localhost\r\n\
                   Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"authentic";
    tls.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buffer)).await;
    let count = read.expect("no response within 10 s").unwrap();
    let response = String::from_utf8_lossy(&buffer[..count]).into_owned();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn admin_tokens_are_created_once_and_deleted() {
    let console = start().await;
    let json = "Content-Type: application/json";
    let created = console
        .as_admin(
            "POST",
            "/api/admin-tokens",
            &["-H", json, "--data-binary", r#"{"role":"read_only"}"#],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["role"], "read_only");

    let header = format!("Authorization: Bearer {token}");
    assert_eq!(
        console
            .call("GET", "/api/keys", &["-H", &header])
            .await
            .status,
        200
    );
    assert_eq!(
        console
            .call("POST", "/api/keys", &["-H", &header])
            .await
            .status,
        403
    );

    let listed = console.as_admin("GET", "/api/admin-tokens", &[]).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.text().contains(&token));
    assert_eq!(listed.json()["tokens"].as_array().unwrap().len(), 3);

    let deleted = console
        .as_admin("DELETE", &format!("/api/admin-tokens/{id}"), &[])
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        console
            .call("GET", "/api/keys", &["-H", &header])
            .await
            .status,
        401
    );

    let bad_role = console
        .as_admin(
            "POST",
            "/api/admin-tokens",
            &["-H", json, "--data-binary", r#"{"role":"root"}"#],
        )
        .await;
    assert_eq!(bad_role.status, 422);

    let own = console
        .secrets
        .find_admin_token(&console.admin_token)
        .await
        .unwrap()
        .unwrap();
    let last = console
        .as_admin("DELETE", &format!("/api/admin-tokens/{}", own.id), &[])
        .await;
    assert_eq!(last.status, 409, "{}", last.text());
}

#[tokio::test]
async fn policy_body_limit_is_larger() {
    let console = start().await;
    let padded = format!("{}{}", "# padding line\n".repeat(140_000), ACME_POLICY);
    assert!(padded.len() > 2 * 1024 * 1024);
    let file = console.dir.path().join("padded.toml");
    std::fs::write(&file, &padded).unwrap();
    let data = format!("@{}", file.display());
    let answer = console
        .as_admin("PUT", "/api/policy", &["--http1.1", "--data-binary", &data])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        padded
    );

    let mut tls = connect_tls(&console).await;
    let request = format!(
        "PUT /api/policy HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n#",
        console.admin_token,
        5 * 1024 * 1024
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let count = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buffer))
        .await
        .expect("no response within 5 s")
        .unwrap();
    let response = String::from_utf8_lossy(&buffer[..count]).into_owned();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
}

const SHARED_POLICY: &str = r#"
[[tenants]]
id = "acme"

[[tenants]]
id = "globex"
"#;

#[tokio::test]
async fn policy_put_in_shared_file_hides_path() {
    let console = start_with_policies(SHARED_POLICY, &[]).await;
    let folder = console.dir.path().to_str().unwrap().to_owned();

    let answer = console
        .as_admin("PUT", "/api/policy", &["--data-binary", ACME_POLICY])
        .await;
    assert_eq!(answer.status, 409, "{}", answer.text());
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("shared with other tenants"), "{error}");
    assert!(
        error.contains("cannot be replaced through the API"),
        "{error}"
    );
    assert!(!error.contains(&folder), "{error}");
    assert!(!error.contains("acme.toml"), "{error}");
    assert!(!error.contains('/'), "{error}");
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        SHARED_POLICY
    );
}

const GLOBEX_WITH_LOCATION: &str = r#"
id = "globex"

[[locations]]
id = "office"
cidrs = ["10.1.0.0/16"]

[[policies]]
id = "everyone"
"#;

#[tokio::test]
async fn policy_diagnostics_hide_server_paths() {
    let console = start_with_other_tenants(&[("globex.toml", GLOBEX_WITH_LOCATION)]).await;
    let folder = console.dir.path().to_str().unwrap().to_owned();

    let missing_feed = format!(
        "{ACME_POLICY}\n[[feeds]]\nid = \"mine\"\npath = \"lists/none.txt\"\nformat = \"domains\"\n"
    );
    let duplicate = "[[tenants]]\nid = \"acme\"\n\n[[tenants]]\nid = \"acme\"\n".to_owned();
    // The text alone is valid; only together with globex's file does its network
    // overlap, which the replacement finds in the admin's own file.
    let overlap = ACME_POLICY.replace(
        "[[policies]]",
        "[[locations]]\nid = \"hq\"\ncidrs = [\"10.1.2.0/24\"]\n\n[[policies]]",
    );
    let cases = [
        (
            "POST",
            "/api/policy/validate",
            &missing_feed,
            "feed `mine`: an uploaded policy may name only the feed files",
        ),
        (
            "PUT",
            "/api/policy",
            &missing_feed,
            "feed `mine`: an uploaded policy may name only the feed files",
        ),
        (
            "POST",
            "/api/policy/validate",
            &duplicate,
            "already defined at <policy>:",
        ),
        (
            "PUT",
            "/api/policy",
            &overlap,
            "overlaps a network of another tenant",
        ),
    ];
    for (method, path, text, expected) in cases {
        let answer = console
            .as_admin(method, path, &["--data-binary", text])
            .await;
        assert_eq!(answer.status, 422, "{method} {path}: {}", answer.text());
        let body = answer.json();
        let messages: Vec<&str> = body["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|diagnostic| diagnostic["message"].as_str().unwrap())
            .collect();
        assert!(
            messages.iter().any(|message| message.contains(expected)),
            "{method} {path}: {messages:?}"
        );
        assert!(!answer.text().contains(&folder), "{}", answer.text());
        assert!(!answer.text().contains(".toml"), "{}", answer.text());
    }
    assert_eq!(
        std::fs::read_to_string(&console.policy_file).unwrap(),
        ACME_POLICY
    );
}

#[tokio::test]
async fn long_ids_are_not_echoed() {
    let console = start().await;
    let long = "a".repeat(5000);
    let quotable = "b".repeat(64);
    let too_long = "b".repeat(65);

    let cases = [
        (
            "DELETE",
            format!("/api/admin-tokens/{long}"),
            "no admin token with that id".to_owned(),
        ),
        (
            "DELETE",
            format!("/api/keys/{long}"),
            "no authentication key with that id".to_owned(),
        ),
        (
            "GET",
            format!("/api/mdm-profile?key={long}"),
            "no authentication key with that id".to_owned(),
        ),
        (
            "DELETE",
            format!("/api/admin-tokens/{too_long}"),
            "no admin token with that id".to_owned(),
        ),
        (
            "DELETE",
            format!("/api/admin-tokens/{quotable}"),
            format!("no admin token with id \"{quotable}\""),
        ),
        (
            "DELETE",
            "/api/keys/nope".to_owned(),
            "no authentication key with id \"nope\"".to_owned(),
        ),
    ];
    for (method, path, expected) in cases {
        let answer = console.as_admin(method, &path, &[]).await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.text());
        assert_eq!(answer.json()["error"], expected.as_str(), "{method} {path}");
        assert!(answer.body.len() < 200, "{}", answer.text());
    }
}

#[tokio::test]
async fn long_request_values_are_not_echoed() {
    let console = start().await;
    let long = "a".repeat(5000);
    let echoed = "a".repeat(100);
    let json = "Content-Type: application/json";

    // Messages the console writes itself leave the value out.
    let cases = [
        (
            format!("/api/mdm-profile?mdm={long}"),
            "unknown mdm; use one of generic,",
        ),
        (
            format!("/api/certificate?format={long}"),
            "unknown format; use pem, der or mobileconfig",
        ),
        (
            format!("/api/activity?from={long}"),
            "from is not an RFC 3339 time (",
        ),
        (
            format!("/api/activity?action={long}"),
            "unknown action; use one of allow,",
        ),
        (
            format!("/api/activity/summary?to={long}"),
            "to is not a YYYY-MM-DD day",
        ),
    ];
    for (path, expected) in cases {
        let answer = console.as_admin("GET", &path, &[]).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with(expected), "{error}");
        assert!(!error.contains(&echoed), "{error}");
        assert!(answer.body.len() < 200, "{}", answer.text());
    }

    // Messages that parsers write keep their start and end, without the middle.
    let unknown_parameter = console
        .as_admin("GET", &format!("/api/activity?{long}=1"), &[])
        .await;
    let unknown_field =
        format!(r#"{{"authenticationKey":"k","deviceId":"d","userId":"u","{long}":1}}"#);
    let unknown_field = console
        .call(
            "POST",
            "/api/agent/enroll",
            &["-H", json, "--data-binary", &unknown_field],
        )
        .await;
    let domain = format!(r#"{{"domain":"x..{long}"}}"#);
    let domain = console
        .as_admin(
            "POST",
            "/api/policy/explain",
            &["-H", json, "--data-binary", &domain],
        )
        .await;
    for (answer, status) in [
        (unknown_parameter, 400),
        (unknown_field, 422),
        (domain, 400),
    ] {
        assert_eq!(answer.status, status, "{}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.chars().count() <= 512, "{error}");
        assert!(error.contains(" ... "), "{error}");
    }
}

#[tokio::test]
async fn json_field_errors_name_the_field() {
    let console = start().await;
    let json = "Content-Type: application/json";
    let tokens_before = console
        .secrets
        .list_admin_tokens("acme")
        .await
        .unwrap()
        .len();

    let cases = [
        (
            "/api/agent/enroll",
            r#"{"authenticationKey":"k","deviceId":5,"userId":"u"}"#,
            422,
            "invalid request body: deviceId: invalid type: integer `5`, expected a string",
        ),
        (
            "/api/agent/enroll",
            r#"{"authenticationKey":"k","deviceId":"d","userId":"u","extra":1}"#,
            422,
            "invalid request body: extra: unknown field `extra`, expected one of `authenticationKey`, `deviceId`, `userId`",
        ),
        (
            "/api/agent/enroll",
            r#"{"authenticationKey":"k","deviceId":"d"}"#,
            422,
            "invalid request body: missing field `userId`",
        ),
        (
            "/api/agent/enroll",
            r#"{"authenticationKey":"k","#,
            400,
            "Failed to parse the request body as JSON",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":5}"#,
            422,
            "invalid request body: role: invalid type: integer `5`, expected a string",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":null}"#,
            422,
            "role: invalid type: null, expected a string",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":{"admin":null}}"#,
            422,
            "role: invalid type: map, expected a string",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":["admin"]}"#,
            422,
            "role: invalid type: sequence, expected a string",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":"root"}"#,
            422,
            "role: unknown role \"root\", expected `admin` or `read_only`",
        ),
        (
            "/api/admin-tokens",
            "{}",
            422,
            "invalid request body: missing field `role`",
        ),
        (
            "/api/admin-tokens",
            r#"{"role":"#,
            400,
            "Failed to parse the request body as JSON",
        ),
        (
            "/api/policy/explain",
            r#"{"url":5}"#,
            422,
            "invalid request body: url: invalid type: integer `5`, expected a string",
        ),
        (
            "/api/policy/explain",
            r#"{"domain":"www.blocked.example","app":{}}"#,
            422,
            "app: invalid type: map, expected a string",
        ),
        (
            "/api/policy/explain",
            r#"{"url":"https://www.blocked.example/","host":"x"}"#,
            422,
            "host: unknown field `host`",
        ),
    ];
    for (path, body, status, expected) in cases {
        let answer = console
            .as_admin("POST", path, &["-H", json, "--data-binary", body])
            .await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{path} {body}: {error}");
        for internal in ["Role", "enum", "struct", "unit", "target type", "Request"] {
            assert!(!error.contains(internal), "{path} {body}: {error}");
        }
    }
    assert_eq!(
        console
            .secrets
            .list_admin_tokens("acme")
            .await
            .unwrap()
            .len(),
        tokens_before
    );
}

/// Creates an admin-role token with `token` and returns the new token and its id.
async fn create_admin_token_with(console: &Console, token: &str) -> (String, String) {
    let header = format!("Authorization: Bearer {token}");
    let created = console
        .call(
            "POST",
            "/api/admin-tokens",
            &[
                "-H",
                &header,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                r#"{"role":"admin"}"#,
            ],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_keep_one_admin_token() {
    let console = start().await;
    let mut survivor = console.admin_token.clone();
    let mut survivor_id = console
        .secrets
        .find_admin_token(&survivor)
        .await
        .unwrap()
        .unwrap()
        .id;

    // Each round, two admin tokens delete each other at the same moment: at most
    // one deletion may succeed.
    for round in 0..30 {
        let (second, second_id) = create_admin_token_with(&console, &survivor).await;
        let first_header = format!("Authorization: Bearer {survivor}");
        let second_header = format!("Authorization: Bearer {second}");
        let first_path = format!("/api/admin-tokens/{second_id}");
        let second_path = format!("/api/admin-tokens/{survivor_id}");
        let first_args = ["-H", first_header.as_str()];
        let second_args = ["-H", second_header.as_str()];
        let (first_delete, second_delete) = tokio::join!(
            console.call("DELETE", &first_path, &first_args),
            console.call("DELETE", &second_path, &second_args),
        );
        let statuses = (first_delete.status, second_delete.status);
        assert_ne!(statuses, (204, 204), "round {round}: both tokens deleted");
        assert!(
            [(204, 409), (204, 401), (409, 204), (401, 204)].contains(&statuses),
            "round {round}: {statuses:?} {} {}",
            first_delete.text(),
            second_delete.text()
        );

        let admins: Vec<_> = console
            .secrets
            .list_admin_tokens("acme")
            .await
            .unwrap()
            .into_iter()
            .filter(|token| token.role == Role::Admin)
            .collect();
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        if first_delete.status != 204 {
            survivor = second;
            survivor_id = second_id;
        }
        assert_eq!(admins[0].id, survivor_id, "round {round}");
    }
}

#[tokio::test]
async fn generated_values_refuse_a_body() {
    let console = start().await;
    for path in ["/api/keys", "/api/disabler-password"] {
        let chosen = console
            .as_admin(
                "POST",
                path,
                &[
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    r#"{"password":"mine"}"#,
                ],
            )
            .await;
        assert_eq!(chosen.status, 422, "{path}: {}", chosen.text());
        let error = chosen.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.starts_with("this request takes no body"), "{error}");

        let empty = console
            .as_admin(
                "POST",
                path,
                &[
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    "{}",
                ],
            )
            .await;
        assert_eq!(empty.status, 201, "{path}: {}", empty.text());
    }
}
