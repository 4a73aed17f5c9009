//! What parity compares and what it lets differ, on hand-made recordings.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::record::{FORMAT, RecordedRequest, Source};
use crate::scenario::Target;

fn step(number: usize, action: &str, answer: Value) -> RecordedStep {
    RecordedStep {
        step: number,
        action: action.to_owned(),
        before: Vec::new(),
        request: Some(RecordedRequest {
            method: "POST".to_owned(),
            path: "{env}/oauth/token".to_owned(),
            query: Vec::new(),
            form: vec!["grant_type".to_owned()],
            body: Vec::new(),
        }),
        answer: Some(answer),
    }
}

fn recording(steps: Vec<RecordedStep>, hops: Vec<Value>) -> Recording {
    Recording {
        format: FORMAT,
        scenario: "s".to_owned(),
        recorded_at: "2026-12-07".to_owned(),
        source: Source::Emulator,
        target: Target::Embedded,
        steps,
        hops,
    }
}

fn token_answer(iss: &str, name: &str) -> Value {
    json!({
        "status": 200,
        "headers": { "cache-control": "no-store", "content-type": "application/json" },
        "body": {
            "access_token": { "jwt": {
                "header": { "alg": "string" },
                "claims": { "iss": "string", "name": "string" },
                "values": { "alg": "RS256", "iss": iss },
            }},
            "token_type": "Bearer",
            "expires_in": 3600,
            "name": name,
            "client_id": "m2m_1",
        },
    })
}

fn fields(differences: &[Difference]) -> Vec<(Place, &str)> {
    differences
        .iter()
        .map(|difference| (difference.place, difference.field.as_str()))
        .collect()
}

#[test]
fn the_same_answers_have_no_difference_and_free_text_may_differ() {
    let left = recording(
        vec![step(1, "token", token_answer("{env}", "Ada"))],
        Vec::new(),
    );
    let right = recording(
        vec![step(1, "token", token_answer("{env}", "Ada L."))],
        Vec::new(),
    );
    assert_eq!(compare(&left, &right), []);
}

#[test]
fn an_issuer_bound_token_is_a_difference_of_the_jwt_value() {
    let left = recording(
        vec![step(1, "token", token_answer("{env}", "Ada"))],
        Vec::new(),
    );
    let right = recording(
        vec![step(1, "token", token_answer("{issuer}", "Ada"))],
        Vec::new(),
    );
    let differences = compare(&left, &right);
    assert_eq!(
        fields(&differences),
        [(Place::Step(1), "/body/access_token/jwt/values/iss")]
    );
    assert_eq!(differences[0].recorded, Some(json!("{env}")));
    assert_eq!(differences[0].replayed, Some(json!("{issuer}")));
    assert_eq!(differences[0].action, "token");
}

#[test]
fn status_errors_types_members_headers_and_locations_are_compared() {
    let left = json!({
        "status": 302,
        "headers": {
            "location": { "url": "{redirect_uri}", "query": { "code": "{code}", "iss": "{issuer}" } },
            "cache-control": "no-store",
        },
        "body": { "error": "invalid_grant", "code": 5, "count": 1, "list": [1, 2], "gone": true },
    });
    let right = json!({
        "status": 200,
        "headers": {
            "location": { "url": "{redirect_uri}", "query": { "error": "access_denied", "iss": "{issuer}" } },
            "www-authenticate": "Bearer",
        },
        "body": { "error": "invalid_request", "code": 3, "count": "1", "list": [1] },
    });
    let left = recording(vec![step(1, "callback", left)], Vec::new());
    let right = recording(vec![step(1, "callback", right)], Vec::new());
    assert_eq!(
        fields(&compare(&left, &right)),
        [
            (Place::Step(1), "/status"),
            (Place::Step(1), "/headers/location/query/code"),
            (Place::Step(1), "/headers/location/query/error"),
            (Place::Step(1), "/headers/www-authenticate"),
            (Place::Step(1), "/headers/cache-control"),
            (Place::Step(1), "/body/code"),
            (Place::Step(1), "/body/count"),
            (Place::Step(1), "/body/error"),
            (Place::Step(1), "/body/gone"),
            (Place::Step(1), "/body/list"),
        ]
    );
}

#[test]
fn a_step_or_hop_only_one_side_has_is_one_difference() {
    let hop = |status: u16| json!({ "hop": 1, "phase": "token", "method": "POST", "url": "{env}/oauth/token", "query": {}, "status": status });
    let left = recording(
        vec![
            step(1, "token", token_answer("{env}", "Ada")),
            step(2, "refresh", json!({ "status": 200 })),
        ],
        vec![hop(200)],
    );
    let right = recording(
        vec![step(1, "token", token_answer("{env}", "Ada"))],
        vec![hop(400), hop(200)],
    );
    let differences = compare(&left, &right);
    assert_eq!(
        fields(&differences),
        [
            (Place::Step(2), ""),
            (Place::Hop(1), "/status"),
            (Place::Hop(2), "")
        ]
    );
    assert_eq!(
        differences[0].recorded,
        Some(json!({ "do": "refresh", "status": 200 }))
    );
    assert_eq!(differences[0].replayed, None);
    assert_eq!(differences[1].action, "token");
}

#[test]
fn the_baseline_accepts_listed_differences_and_reports_entries_that_match_nothing() {
    let left = recording(
        vec![step(1, "token", token_answer("{env}", "Ada"))],
        Vec::new(),
    );
    let right = recording(
        vec![step(1, "token", token_answer("{issuer}", "Ada"))],
        Vec::new(),
    );
    let baseline = ParityBaseline::parse(
        Path::new("baseline.toml"),
        "[[expected_difference]]\nscenario = \"s\"\nstep = 1\n\
         field = \"/body/access_token/jwt/values/iss\"\nreason = \"issuer-bound here\"\n\
         [[expected_difference]]\nscenario = \"s\"\nstep = 2\nfield = \"/status\"\nreason = \"gone\"\n",
    )
    .unwrap();
    let parity = |differences: Vec<Difference>| ScenarioParity {
        id: "s".to_owned(),
        file: "s.json".to_owned(),
        source: "emulator".to_owned(),
        status: ParityStatus::Different,
        reason: None,
        differences,
    };
    let report = settle(
        vec![parity(compare(&left, &right))],
        &baseline,
        Duration::ZERO,
    );
    assert!(report.succeeded());
    assert_eq!((report.unlisted, report.baselined), (0, 1));
    assert_eq!(report.stale_baseline_entries, ["s step 2 \"/status\""]);
    let text = render(&report);
    assert!(text.contains("[1/1] DIFF s (1 difference)\n"), "{text}");
    assert!(
        text.contains(
            "  s step 1 (token) /body/access_token/jwt/values/iss\n    recorded: \"{env}\"\n    \
             replayed: \"{issuer}\"\n    rows: none of docs/fidelity.md names this scenario\n    \
             in the baseline: issuer-bound here\n"
        ),
        "{text}"
    );
    assert!(text.contains("Stale baseline entries"), "{text}");

    let without = settle(
        vec![parity(compare(&left, &right))],
        &ParityBaseline::default(),
        Duration::ZERO,
    );
    assert!(!without.succeeded());
    assert_eq!(without.unlisted, 1);
}
