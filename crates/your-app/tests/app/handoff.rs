//! Steps 2 and 3 with `auto_login`: the management token, the user-details call, the redirect to
//! `partner:callback`, and what happens when Scalekit refuses.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::json;

use crate::support::{
    CLIENT_ID, CLIENT_SECRET, CONNECTION_ID, FakeScalekit, TestApp, config, expect_redirect,
    expect_status, expected_callback, gateway_error, persona, start_stack,
};

/// A state with every character that URL encoding tends to get wrong.
const AWKWARD_STATE: &str = "HntJ+ENB6y/161i9=P1yz%uZVv 2SSTfD3a&x=y;z";

#[tokio::test]
async fn auto_login_redirects_to_the_exact_partner_callback_with_the_same_state()
-> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;

    let response = app
        .get_login(
            &[("login_request_id", "lri_1001"), ("state", AWKWARD_STATE)],
            None,
        )
        .await?;

    let location = expect_redirect(&response)?;
    assert_eq!(location, expected_callback(&fake, AWKWARD_STATE)?);
    assert_eq!(
        location.path(),
        format!("/sso/v1/connections/{CONNECTION_ID}/partner:callback")
    );
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs, [("state".to_owned(), AWKWARD_STATE.to_owned())]);
    assert_eq!(response.headers()["cache-control"], "no-store");
    Ok(())
}

#[tokio::test]
async fn the_user_post_carries_the_bearer_from_the_token_call_and_the_bare_claims()
-> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;

    let response = app
        .get_login(&[("login_request_id", "lri_2002"), ("state", "s1")], None)
        .await?;
    expect_redirect(&response)?;

    let token_requests = fake.token_requests();
    assert_eq!(token_requests.len(), 1);
    let token_request = &token_requests[0];
    assert_eq!(token_request["grant_type"], "client_credentials");
    assert_eq!(token_request["client_id"], CLIENT_ID);
    assert_eq!(token_request["client_secret"], CLIENT_SECRET);
    assert_eq!(token_request.len(), 3);

    let posts = fake.user_posts();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.connection_id, CONNECTION_ID);
    assert_eq!(post.login_request_id, "lri_2002");
    assert_eq!(post.authorization.as_deref(), Some("Bearer mgmt-token-1"));
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    // The bare user object, not `{"user": {...}}`.
    assert_eq!(post.body, serde_json::to_value(&persona("ada")?.claims)?);
    assert_eq!(post.body["sub"], "ext-usr-ada-0001");
    assert!(post.body.get("user").is_none());
    Ok(())
}

#[tokio::test]
async fn the_management_token_is_fetched_once_for_two_logins() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;

    for (login_request_id, state) in [("lri_1", "state-1"), ("lri_2", "state-2")] {
        let response = app
            .get_login(
                &[("login_request_id", login_request_id), ("state", state)],
                None,
            )
            .await?;
        assert_eq!(
            expect_redirect(&response)?,
            expected_callback(&fake, state)?
        );
    }

    assert_eq!(fake.token_requests().len(), 1);
    let posts = fake.user_posts();
    assert_eq!(posts.len(), 2);
    assert!(
        posts
            .iter()
            .all(|post| post.authorization.as_deref() == Some("Bearer mgmt-token-1"))
    );
    Ok(())
}

#[tokio::test]
async fn a_token_within_a_minute_of_expiry_is_not_reused() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(30).await?;
    let app = TestApp::start(config(&fake.url, Some("ada"))?).await?;

    for login_request_id in ["lri_1", "lri_2"] {
        let response = app
            .get_login(
                &[("login_request_id", login_request_id), ("state", "s")],
                None,
            )
            .await?;
        expect_redirect(&response)?;
    }

    assert_eq!(fake.token_requests().len(), 2);
    let bearers: Vec<Option<String>> = fake
        .user_posts()
        .into_iter()
        .map(|post| post.authorization)
        .collect();
    assert_eq!(
        bearers,
        [
            Some("Bearer mgmt-token-1".to_owned()),
            Some("Bearer mgmt-token-2".to_owned())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_401_from_the_user_post_triggers_one_token_refresh_and_a_retry() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;
    fake.script_user_answers([(
        StatusCode::UNAUTHORIZED,
        gateway_error(16, "Token empty", "UNAUTHENTICATED"),
    )]);

    let response = app
        .get_login(&[("login_request_id", "lri_3"), ("state", "s3")], None)
        .await?;

    assert_eq!(expect_redirect(&response)?, expected_callback(&fake, "s3")?);
    assert_eq!(fake.token_requests().len(), 2);
    let posts = fake.user_posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].authorization.as_deref(),
        Some("Bearer mgmt-token-1")
    );
    assert_eq!(
        posts[1].authorization.as_deref(),
        Some("Bearer mgmt-token-2")
    );
    assert_eq!(posts[1].body, posts[0].body);

    // The refreshed token is the cached one now.
    let response = app
        .get_login(&[("login_request_id", "lri_4"), ("state", "s4")], None)
        .await?;
    expect_redirect(&response)?;
    assert_eq!(fake.token_requests().len(), 2);
    assert_eq!(
        fake.user_posts()[2].authorization.as_deref(),
        Some("Bearer mgmt-token-2")
    );
    Ok(())
}

#[tokio::test]
async fn a_second_401_stops_the_login_with_an_error_page() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;
    let unauthenticated = gateway_error(16, "Token empty", "UNAUTHENTICATED");
    fake.script_user_answers([
        (StatusCode::UNAUTHORIZED, unauthenticated.clone()),
        (StatusCode::UNAUTHORIZED, unauthenticated),
    ]);

    let response = app
        .get_login(&[("login_request_id", "lri_5"), ("state", "s5")], None)
        .await?;

    assert!(response.headers().get(LOCATION).is_none());
    let body = expect_status(response, 502).await?;
    assert!(
        body.contains("scalekit refused the user details call with http status 401 Unauthorized"),
        "{body}"
    );
    assert!(
        body.contains("<dt>message</dt><dd>Token empty</dd>"),
        "{body}"
    );
    assert!(
        body.contains("<dt>error_code</dt><dd>UNAUTHENTICATED</dd>"),
        "{body}"
    );
    assert_eq!(fake.token_requests().len(), 2);
    assert_eq!(fake.user_posts().len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_400_from_the_user_post_shows_scalekits_message_and_does_not_redirect()
-> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;
    let mut invalid = gateway_error(
        3,
        "phone_number must be in E.164 format",
        "INVALID_ARGUMENT",
    );
    invalid["details"][0]["validation_error_info"] = json!({
        "field_violations": [{"field": "phone_number", "description": "not E.164 <+1…>"}]
    });
    fake.script_user_answers([(StatusCode::BAD_REQUEST, invalid)]);

    let response = app
        .get_login(&[("login_request_id", "lri_6"), ("state", "s6")], None)
        .await?;

    assert!(response.headers().get(LOCATION).is_none());
    let body = expect_status(response, 502).await?;
    assert!(body.contains("<dt>http status</dt><dd>400</dd>"), "{body}");
    assert!(body.contains("<dt>code</dt><dd>3</dd>"), "{body}");
    assert!(
        body.contains("<dt>message</dt><dd>phone_number must be in E.164 format</dd>"),
        "{body}"
    );
    assert!(
        body.contains("<dt>error_code</dt><dd>INVALID_ARGUMENT</dd>"),
        "{body}"
    );
    assert!(
        body.contains("<dt>field <code>phone_number</code></dt><dd>not E.164 &lt;+1…&gt;</dd>"),
        "{body}"
    );
    // A 400 is not retried.
    assert_eq!(fake.token_requests().len(), 1);
    assert_eq!(fake.user_posts().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_refused_token_request_shows_the_oauth_error_and_posts_nothing() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;
    let mut wrong_secret = config(&fake.url, Some("ada"))?;
    wrong_secret.client_secret = scalekit_wire::Secret::new("test_sk_wrong");
    let app = TestApp::start(wrong_secret).await?;

    let response = app
        .get_login(&[("login_request_id", "lri_7"), ("state", "s7")], None)
        .await?;

    assert!(response.headers().get(LOCATION).is_none());
    let body = expect_status(response, 502).await?;
    assert!(
        body.contains(
            "scalekit refused the management token request with http status 401 Unauthorized"
        ),
        "{body}"
    );
    assert!(
        body.contains("<dt>error</dt><dd>invalid_client</dd>"),
        "{body}"
    );
    assert!(
        body.contains("<dt>error_description</dt><dd>client authentication failed</dd>"),
        "{body}"
    );
    assert!(!body.contains("test_sk_wrong"));
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_scalekit_shows_an_error_page() -> anyhow::Result<()> {
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let environment_url = url::Url::parse(&format!("http://{}", closed.local_addr()?))?;
    drop(closed);
    let app = TestApp::start(config(&environment_url, Some("ada"))?).await?;

    let response = app
        .get_login(&[("login_request_id", "lri_8"), ("state", "s8")], None)
        .await?;

    assert!(response.headers().get(LOCATION).is_none());
    let body = expect_status(response, 502).await?;
    assert!(
        body.contains("could not reach scalekit for the management token request"),
        "{body}"
    );
    // The whole cause chain, down to the socket error, is on the page.
    assert!(body.contains("Connection refused"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_success_body_without_an_auth_request_id_is_not_trusted() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;
    fake.script_user_answers([(StatusCode::OK, json!({"unexpected": true}))]);

    let response = app
        .get_login(&[("login_request_id", "lri_9"), ("state", "s9")], None)
        .await?;

    assert!(response.headers().get(LOCATION).is_none());
    let body = expect_status(response, 502).await?;
    assert!(body.contains("scalekit answered the user details call with http status 200 OK and an undocumented body"), "{body}");
    Ok(())
}

#[tokio::test]
async fn concurrent_logins_share_one_token_request() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("grace")).await?;
    let login_url = app.base_url.join("login")?;

    let tasks: Vec<_> = (0..6)
        .map(|number| {
            let http = app.http.clone();
            let login_url = login_url.clone();
            tokio::spawn(async move {
                http.get(login_url)
                    .query(&[
                        ("login_request_id", format!("lri_{number}")),
                        ("state", format!("state-{number}")),
                    ])
                    .send()
                    .await
            })
        })
        .collect();
    for task in tasks {
        expect_redirect(&task.await??)?;
    }

    assert_eq!(fake.token_requests().len(), 1);
    assert_eq!(fake.user_posts().len(), 6);
    Ok(())
}
