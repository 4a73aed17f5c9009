//! Properties of recordings: no secret ever gets through normalization, wherever an answer puts
//! it, and two runs that differ only in their random values (ids, codes, times, ports) record
//! the same file.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use url::Url;

use super::tests::{jwt, token_exchanges};
use super::*;

/// A secret: 12 to 40 URL-safe characters (client secrets, opaque tokens, verifiers).
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{12,40}"
}

/// Where an answer puts a secret.
#[derive(Debug, Clone)]
enum Spot {
    /// A JSON member's whole value, under this name.
    Member(String),
    /// Inside a longer JSON string, between these texts.
    Inside(String, String),
    /// As a JSON member's name.
    Key,
    /// In an array.
    Element,
    /// A query parameter of `Location`, under this name.
    LocationQuery(String),
    /// The path of `Location`.
    LocationPath,
    /// In `WWW-Authenticate`.
    Challenge,
    /// A claim of a JWT in the body (`iss`, `aud` or another).
    Claim(String),
    /// The hosted error page's error code.
    ErrorPage,
}

fn spot() -> impl Strategy<Value = Spot> {
    let name = prop_oneof![
        Just("access_token".to_owned()),
        Just("client_secret".to_owned()),
        Just("message".to_owned()),
        Just("error_description".to_owned()),
        Just("state".to_owned()),
        Just("code".to_owned()),
        "[a-z_]{1,12}",
    ];
    let text = "[ -~]{0,12}";
    prop_oneof![
        name.clone().prop_map(Spot::Member),
        (text, text).prop_map(|(before, after)| Spot::Inside(before, after)),
        Just(Spot::Key),
        Just(Spot::Element),
        name.clone().prop_map(Spot::LocationQuery),
        Just(Spot::LocationPath),
        Just(Spot::Challenge),
        prop_oneof![Just("iss".to_owned()), Just("aud".to_owned()), name].prop_map(Spot::Claim),
        Just(Spot::ErrorPage),
    ]
}

/// An answer with `secret` at `spot`, the rest of it plausible.
fn answer_with(secret: &str, spot: &Spot) -> RawExchange {
    let mut body = json!({ "token_type": "Bearer", "expires_in": 3600 });
    let mut location = None;
    let mut challenge = None;
    let mut content_type = Some("application/json".to_owned());
    match spot {
        Spot::Member(name) => body[name.as_str()] = json!(secret),
        Spot::Inside(before, after) => body["message"] = json!(format!("{before}{secret}{after}")),
        Spot::Key => body[secret] = json!(true),
        Spot::Element => body["values"] = json!(["a", secret, "b"]),
        Spot::LocationQuery(name) => {
            let mut url = Url::parse("http://127.0.0.1:33418/callback").unwrap();
            url.query_pairs_mut().append_pair(name, secret);
            location = Some(url);
        }
        Spot::LocationPath => {
            location = Some(Url::parse(&format!("http://127.0.0.1:9/x/{secret}/y")).unwrap());
        }
        Spot::Challenge => {
            challenge = Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{secret}\""
            ));
        }
        Spot::Claim(name) => {
            let claims = json!({ name.as_str(): secret, "sub": "usr_1" });
            body["access_token"] = json!(jwt(&json!({ "alg": "RS256", "kid": secret }), &claims));
        }
        Spot::ErrorPage => {
            content_type = Some("text/html".to_owned());
            let page = format!("<!doctype html><code id=\"error\">{secret}</code>");
            return RawExchange {
                response_body: page.into_bytes(),
                ..exchange(None, None, content_type)
            };
        }
    }
    RawExchange {
        response_body: body.to_string().into_bytes(),
        ..exchange(location, challenge, content_type)
    }
}

fn exchange(
    location: Option<Url>,
    www_authenticate: Option<String>,
    content_type: Option<String>,
) -> RawExchange {
    RawExchange {
        method: "POST".to_owned(),
        url: Url::parse("http://127.0.0.1:40123/oauth/token").unwrap(),
        form: vec!["grant_type".to_owned(), "client_secret".to_owned()],
        body: Vec::new(),
        status: 200,
        location,
        www_authenticate,
        cache_control: Some("no-store".to_owned()),
        content_type,
        response_body: Vec::new(),
    }
}

/// Secrets as the runner knows them: under secret variable names.
fn secret_variables(secrets: &[String]) -> BTreeMap<String, String> {
    const NAMES: &[&str] = &[
        "api_client_secret",
        "management_token",
        "access_token",
        "refresh_token",
        "code_verifier",
        "agent_client_secret",
    ];
    let mut variables: BTreeMap<String, String> = secrets
        .iter()
        .zip(NAMES)
        .map(|(secret, name)| ((*name).to_owned(), secret.clone()))
        .collect();
    variables.insert("env".to_owned(), "http://127.0.0.1:40123".to_owned());
    variables
}

proptest! {
    #[test]
    fn no_secret_gets_through_normalization(
        secrets in prop::collection::vec(secret(), 1..=6),
        spots in prop::collection::vec((any::<prop::sample::Index>(), spot()), 1..6),
    ) {
        let variables = secret_variables(&secrets);
        let exchanges: Vec<RawExchange> = spots
            .iter()
            .map(|(which, spot)| answer_with(which.get::<String>(&secrets), spot))
            .collect();
        let mut recorder = ScenarioRecorder::new();
        for (index, exchange) in exchanges.into_iter().enumerate() {
            recorder.step(index + 1, "request", &variables, vec![exchange]);
        }
        // The passes alone keep every secret out, before the last scrub of `finish`.
        let steps = serde_json::to_string(&recorder.steps).unwrap();
        for secret in &secrets {
            prop_assert!(!steps.contains(secret.as_str()), "{secret} in {steps}");
        }
        let recording = recorder.finish("s", Target::Scalekit, "2026-12-07");
        let text = serde_json::to_string(&recording).unwrap();
        for secret in &secrets {
            prop_assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
        prop_assert!(!text.contains("127.0.0.1:40123"), "the environment's host in {text}");
    }

    #[test]
    fn two_runs_that_differ_only_in_random_values_record_the_same_file(
        runs in prop::collection::vec(
            (
                40_000u16..60_000,
                10_000_000_000_000_000u64..99_999_999_999_999_999,
                10_000_000_000_000_000u64..99_999_999_999_999_999,
                "[A-Za-z0-9_-]{43}",
                "[A-Za-z0-9_-]{43}",
                1_700_000_000u64..1_900_000_000,
            ),
            2,
        ),
    ) {
        let record = |(port, client, user, code, refresh, issued_at): &(u16, u64, u64, String, String, u64)| {
            let env = format!("http://127.0.0.1:{port}");
            let access_token = jwt(
                &json!({ "alg": "RS256", "kid": format!("snk_{client}"), "typ": "JWT" }),
                &json!({
                    "iss": env,
                    "aud": ["http://127.0.0.1:33419/mcp", "res_81920374650192839"],
                    "client_id": format!("m2m_{client}"),
                    "sub": format!("usr_{user}"),
                    "jti": format!("tkn_{user}"),
                    "iat": issued_at,
                    "exp": issued_at + 3600,
                }),
            );
            let (variables, exchanges) =
                token_exchanges(&env, &format!("m2m_{client}"), code, &access_token, refresh);
            let mut recorder = ScenarioRecorder::new();
            for (index, exchange) in exchanges.into_iter().enumerate() {
                recorder.step(index + 1, "token", &variables, vec![exchange]);
            }
            let mut body = json!({ "created_at": format!("2026-12-0{}T10:00:00Z", issued_at % 9 + 1) });
            body["user"] = json!(format!("usr_{user}"));
            let step = RawExchange {
                method: "GET".to_owned(),
                url: Url::parse(&format!("{env}/api/v1/users/usr_{user}")).unwrap(),
                form: Vec::new(),
                body: Vec::new(),
                status: 200,
                location: None,
                www_authenticate: None,
                cache_control: None,
                content_type: Some("application/json".to_owned()),
                response_body: body.to_string().into_bytes(),
            };
            recorder.step(3, "request", &variables, vec![step]);
            serde_json::to_value(recorder.finish("s", Target::Embedded, "2026-12-07")).unwrap()
        };
        let first: Value = record(&runs[0]);
        let second: Value = record(&runs[1]);
        prop_assert_eq!(first, second);
    }
}
