//! The normalizer's placeholders, exactly, on small examples; one whole recording as a snapshot.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};
use url::Url;

use super::normalize::{Normalizer, holds_placeholder, is_placeholder, is_secret_variable};
use super::*;

/// An unsigned-looking JWT with `header` and `claims` (the signature is not checked).
pub(super) fn jwt(header: &Value, claims: &Value) -> String {
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!("{}.{}.c2lnbmF0dXJl", encode(header), encode(claims))
}

fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn normalizer(pairs: &[(&str, &str)]) -> Normalizer {
    let mut normalizer = Normalizer::new();
    normalizer.learn(pairs.iter().copied());
    normalizer
}

const ENV: &str = "http://127.0.0.1:40123";

#[test]
fn known_values_become_their_names_longest_first_and_only_where_they_stand_alone() {
    let mut normalizer = normalizer(&[
        ("env", ENV),
        ("env_origin", ENV),
        (
            "issuer",
            "http://127.0.0.1:40123/resources/res_81920374650192839",
        ),
        ("mcp_url", "http://127.0.0.1:40124/mcp"),
        ("server_url", "http://127.0.0.1:40124/mcp"),
        ("state", "q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E"),
    ]);
    assert_eq!(
        normalizer.text("http://127.0.0.1:40123/resources/res_81920374650192839"),
        "{issuer}"
    );
    assert_eq!(
        normalizer.text("http://127.0.0.1:40123/oauth/token"),
        "{env}/oauth/token"
    );
    assert_eq!(normalizer.text("http://127.0.0.1:40124/mcp"), "{mcp_url}");
    // Another port that starts with the environment's is not the environment.
    assert_eq!(normalizer.text("http://127.0.0.1:401234/x"), "{loopback}/x");
    assert_eq!(
        normalizer.text("host 127.0.0.1:40123 refused"),
        "host {env_host} refused"
    );
    assert_eq!(
        normalizer.text("next=http%3A%2F%2F127.0.0.1%3A40123&x=1"),
        "next={env}&x=1"
    );
    assert_eq!(
        normalizer.text("state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E"),
        "state={state}"
    );
}

#[test]
fn ids_are_numbered_by_prefix_in_order_of_first_appearance() {
    let mut normalizer = normalizer(&[("client_id", "m2m_81920374650192842")]);
    assert_eq!(
        normalizer.text("m2m_81920374650192842 usr_7 m2m_99 usr_7 usrcnst_5 m2morg_1"),
        "m2m_1 usr_1 m2m_2 usr_1 usrcnst_1 m2morg_1"
    );
    assert_eq!(
        normalizer.text("m2m_99"),
        "m2m_2",
        "numbers last for the file"
    );
    assert_eq!(
        normalizer.text("/connections/conn_81920374650192838/auth-requests/lri_42/user"),
        "/connections/conn_1/auth-requests/lri_1/user"
    );
    // Not an id: inside a word, or a prefix without a body.
    assert_eq!(
        normalizer.text("max_usr_3 res_ sec_"),
        "max_usr_3 res_ sec_"
    );
}

#[test]
fn secrets_become_secret_wherever_they_appear_and_times_and_random_values_their_classes() {
    let mut normalizer = normalizer(&[
        (
            "api_client_secret",
            "test_sk_testbed_dev_secret_not_for_production",
        ),
        ("refresh_token", "rt0123456789abcdefghij"),
        ("code_verifier", "verifier0123456789"),
        ("code", "code0123456789abcdef"),
    ]);
    assert_eq!(
        normalizer
            .text("xxrt0123456789abcdefghijxx and test_sk_testbed_dev_secret_not_for_production"),
        "xx{secret}xx and {secret}"
    );
    assert_eq!(normalizer.text("code0123456789abcdef"), "{code}");
    assert_eq!(
        normalizer.text("issued 2026-12-07T06:10:45Z, expires 2026-12-07T07:10:45.123+01:00"),
        "issued {timestamp}, expires {timestamp}"
    );
    assert_eq!(normalizer.text("q7Hx2mPzR4tVb8nK1sLc0d"), "{opaque}");
    assert_eq!(normalizer.text("authorization_code"), "authorization_code");
    assert_eq!(
        normalizer.text("mcp:read offline_access"),
        "mcp:read offline_access"
    );
}

#[test]
fn which_variables_are_secrets() {
    for name in [
        "api_client_secret",
        "management_token",
        "access_token",
        "refresh_token",
        "previous_refresh_token",
        "other.refresh_token",
        "code_verifier",
        "id_jag",
    ] {
        assert!(is_secret_variable(name), "{name}");
    }
    for name in [
        "code",
        "state",
        "client_state",
        "consent_id",
        "env",
        "code_challenge",
    ] {
        assert!(!is_secret_variable(name), "{name}");
    }
}

#[test]
fn a_jwt_becomes_its_types_and_the_values_parity_depends_on() {
    let mut normalizer = normalizer(&[
        ("env", ENV),
        (
            "issuer",
            "http://127.0.0.1:40123/resources/res_81920374650192839",
        ),
        ("mcp_url", "http://127.0.0.1:40124/mcp"),
    ]);
    let token = jwt(
        &json!({ "alg": "RS256", "kid": "snk_81920374650192840", "typ": "at+jwt" }),
        &json!({
            "iss": "http://127.0.0.1:40123/resources/res_81920374650192839",
            "aud": ["http://127.0.0.1:40124/mcp", "res_81920374650192839"],
            "sub": "usr_81920374650192855",
            "exp": 1_796_000_000,
            "scope": "mcp:read",
        }),
    );
    assert_eq!(
        normalizer.value(&token),
        json!({ "jwt": {
            "header": { "alg": "string", "kid": "string", "typ": "string" },
            "claims": { "aud": "array", "exp": "number", "iss": "string", "scope": "string", "sub": "string" },
            "values": {
                "alg": "RS256",
                "typ": "at+jwt",
                "kid": "snk_",
                "iss": "{issuer}",
                "aud": ["{mcp_url}", "res_1"],
            },
        }})
    );
    assert_eq!(normalizer.value("a.b"), json!("a.b"), "not a JWT");
}

#[test]
fn json_members_named_as_times_or_secrets_lose_their_values() {
    let mut normalizer = normalizer(&[("refresh_token", "rt0123456789abcdefghij")]);
    let body = json!({
        "refresh_token": "rt0123456789abcdefghij",
        "id_token": "an unknown secret",
        "state": "unknown",
        "code": 16,
        "created_at": 1_796_000_000,
        "iat": 1_796_000_000,
        "expires_in": 3600,
        "error": "invalid_grant",
    });
    assert_eq!(
        normalizer.json(&body),
        json!({
            "refresh_token": "{secret}",
            "id_token": "{secret}",
            "state": "{secret}",
            "code": 16,
            "created_at": "{timestamp}",
            "iat": "{timestamp}",
            "expires_in": 3600,
            "error": "invalid_grant",
        })
    );
}

#[test]
fn a_location_is_split_into_its_url_and_normalized_parameters() {
    let mut normalizer = normalizer(&[
        ("env", ENV),
        ("redirect_uri", "http://127.0.0.1:33418/callback"),
        ("code", "code0123456789abcdef"),
        ("client_state", "cs0123456789abcdefghij"),
        (
            "issuer",
            "http://127.0.0.1:40123/resources/res_81920374650192839",
        ),
    ]);
    let location = Url::parse(
        "http://127.0.0.1:33418/callback?code=code0123456789abcdef&state=cs0123456789abcdefghij\
         &iss=http%3A%2F%2F127.0.0.1%3A40123%2Fresources%2Fres_81920374650192839&state=leaked",
    )
    .unwrap();
    assert_eq!(
        normalizer.url(&location),
        json!({
            "url": "{redirect_uri}",
            "query": {
                "code": "{code}",
                "iss": "{issuer}",
                "state": ["{client_state}", "{secret}"],
            },
        })
    );
}

#[test]
fn html_pages_are_reduced_to_what_identifies_them() {
    let mut normalizer = Normalizer::new();
    let error_page = "<!doctype html><html><title>Sign-in error</title>\
        <p class=\"hint\">error=<code id=\"error\">invalid_state</code></p></html>";
    assert_eq!(
        normalizer.body(Some("text/html"), error_page.as_bytes()),
        json!({ "html": "error-page", "error": "invalid_state" })
    );
    let consent =
        "<!doctype html><form><input type=\"hidden\" name=\"consent_id\" value=\"x\"></form>";
    assert_eq!(
        normalizer.body(Some("text/html"), consent.as_bytes()),
        json!({ "html": "consent-page" })
    );
    assert_eq!(
        normalizer.body(Some("text/html"), b"<html>another page</html>"),
        json!({ "html": "page", "length": "small" })
    );
    assert_eq!(
        normalizer.body(Some("text/plain"), &[b'x'; 2000]),
        json!({ "text": "medium" })
    );
    assert_eq!(normalizer.body(None, b""), Value::Null);
}

#[test]
fn placeholders_are_told_apart_from_plain_strings() {
    assert!(is_placeholder("{code}"));
    assert!(!is_placeholder("{env}/oauth/token"));
    assert!(holds_placeholder("{env}/oauth/token"));
    assert!(holds_placeholder("m2m_1"));
    assert!(!holds_placeholder("Bearer"));
    assert!(!holds_placeholder("max_usr_3"));
}

#[test]
fn dates_are_civil_utc_days() {
    assert_eq!(civil_date(0), "1970-01-01");
    assert_eq!(civil_date(20_429), "2025-12-07");
    assert_eq!(civil_date(11_016), "2000-02-29");
    assert_eq!(today().len(), 10);
}

/// A token step and a callback, as a step scenario would record them.
pub(super) fn token_exchanges(
    env: &str,
    client_id: &str,
    code: &str,
    access_token: &str,
    refresh_token: &str,
) -> (BTreeMap<String, String>, Vec<RawExchange>) {
    let variables = variables(&[
        ("env", env),
        ("issuer", &format!("{env}/resources/res_81920374650192839")),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:33418/callback"),
        ("access_token", access_token),
        ("refresh_token", refresh_token),
        (
            "api_client_secret",
            "test_sk_testbed_dev_secret_not_for_production",
        ),
    ]);
    let callback = RawExchange {
        method: "GET".to_owned(),
        url: Url::parse(&format!(
            "{env}/sso/v1/connections/conn_81920374650192838/partner:callback?state=abc"
        ))
        .unwrap(),
        form: Vec::new(),
        body: Vec::new(),
        status: 302,
        location: Some(
            Url::parse(&format!(
                "http://127.0.0.1:33418/callback?code={code}&iss={}",
                url::form_urlencoded::byte_serialize(
                    format!("{env}/resources/res_81920374650192839").as_bytes()
                )
                .collect::<String>()
            ))
            .unwrap(),
        ),
        www_authenticate: None,
        cache_control: Some("no-store".to_owned()),
        content_type: None,
        response_body: Vec::new(),
    };
    let token = RawExchange {
        method: "POST".to_owned(),
        url: Url::parse(&format!("{env}/oauth/token")).unwrap(),
        form: [
            "grant_type",
            "code",
            "code_verifier",
            "redirect_uri",
            "client_id",
            "resource",
        ]
        .map(str::to_owned)
        .to_vec(),
        body: Vec::new(),
        status: 200,
        location: None,
        www_authenticate: None,
        cache_control: Some("no-store".to_owned()),
        content_type: Some("application/json; charset=utf-8".to_owned()),
        response_body: json!({
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "mcp:read offline_access",
        })
        .to_string()
        .into_bytes(),
    };
    (variables, vec![callback, token])
}

#[test]
fn a_recorded_token_exchange_is_all_placeholders_and_names() {
    let env = "http://127.0.0.1:40123";
    let access_token = jwt(
        &json!({ "alg": "RS256", "kid": "snk_81920374650192840", "typ": "JWT" }),
        &json!({
            "iss": env,
            "aud": ["http://127.0.0.1:40124/mcp", "res_81920374650192839"],
            "client_id": "m2m_81920374650192999",
            "sub": "usr_81920374650192855",
            "iat": 1_796_000_000,
            "exp": 1_796_003_600,
        }),
    );
    let (variables, exchanges) = token_exchanges(
        env,
        "m2m_81920374650192999",
        "code0123456789abcdef",
        &access_token,
        "rt0123456789abcdefghij",
    );
    let mut recorder = ScenarioRecorder::new();
    let mut exchanges = exchanges.into_iter();
    recorder.step(1, "callback", &variables, vec![exchanges.next().unwrap()]);
    recorder.step(2, "token", &variables, vec![exchanges.next().unwrap()]);
    let recording = recorder.finish("code-exchange-succeeds", Target::Embedded, "2026-12-07");
    let text = serde_json::to_string_pretty(&recording).unwrap();
    for secret in [
        access_token.as_str(),
        "rt0123456789abcdefghij",
        "code0123456789abcdef",
        "127.0.0.1:40123",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    insta::assert_snapshot!(text);
}

#[test]
fn a_real_environments_hosts_never_reach_a_recording() {
    let mut normalizer = normalizer(&[("env", "https://acme.scalekit.dev")]);
    assert_eq!(
        normalizer.text("https://acme.scalekit.dev/oauth/token"),
        "{env}/oauth/token"
    );
    // Percent-encoded in a query value that is not exactly the environment URL, in another
    // case, inside a longer name: still the environment's host.
    assert_eq!(
        normalizer.text("back=http%3A%2F%2Facme.scalekit.dev%3A8443%2Fx"),
        "back=http%3A%2F%2F{env_host}%3A8443%2Fx"
    );
    assert_eq!(normalizer.text("ACME.Scalekit.DEV"), "{env_host}");
    assert_eq!(normalizer.text("mail.acme.scalekit.dev"), "mail.{env_host}");
    // Any other host an answer names: a custom domain, a shared host, a third party.
    assert_eq!(
        normalizer.text("https://auth.scalekit.com/ui/error?error=invalid_state"),
        "{host}/ui/error?error=invalid_state"
    );
    assert_eq!(
        normalizer.text("see HTTPS://Login.Example.com:8443/x"),
        "see {host}/x"
    );
    // Loopback stays for its own pass.
    assert_eq!(normalizer.text("http://localhost:3000/cb"), "{loopback}/cb");
    assert_eq!(normalizer.text("http://[::1]:3000/cb"), "{loopback}/cb");
    assert_eq!(
        normalizer.text("http://localhost/cb"),
        "http://localhost/cb"
    );
}

#[test]
fn a_pkce_challenge_is_opaque_by_its_name_and_words_are_not_ids() {
    let mut normalizer = normalizer(&[("env", ENV)]);
    // Base64url of a hash may hold no digit: the name says it is random.
    let url = Url::parse(
        "http://127.0.0.1:40123/oauth/authorize?code_challenge=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ&code_challenge_method=S256",
    )
    .unwrap();
    assert_eq!(
        normalizer.url(&url)["query"],
        json!({ "code_challenge": "{opaque}", "code_challenge_method": "S256" })
    );
    assert_eq!(
        normalizer
            .json(&json!({ "code_challenge": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ" })),
        json!({ "code_challenge": "{opaque}" })
    );
    // Member names and words after an id prefix, without a digit, are not ids.
    assert_eq!(normalizer.text("org_id"), "org_id");
    assert_eq!(normalizer.key("env_name"), "env_name");
    assert_eq!(normalizer.text("org_81920374650192840"), "org_1");
}
