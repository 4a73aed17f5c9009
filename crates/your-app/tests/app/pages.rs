//! Pages that do not sign anyone in: missing login values, the landing page, health, start-up errors.

use your_app::{App, AppError};

use crate::support::{FakeScalekit, config, expect_status, start_stack};

#[tokio::test]
async fn a_missing_state_is_refused_with_400_and_nothing_is_posted() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;

    let response = app
        .get_login(&[("login_request_id", "lri_1")], None)
        .await?;

    assert!(response.headers().get("location").is_none());
    let body = expect_status(response, 400).await?;
    assert!(
        body.contains("This login cannot continue: the request is missing <code>state</code>."),
        "{body}"
    );
    assert!(fake.token_requests().is_empty());
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_empty_login_request_id_and_a_missing_state_are_both_named() -> anyhow::Result<()> {
    let (_fake, app) = start_stack(None).await?;

    let response = app.get_login(&[("login_request_id", "")], None).await?;

    let body = expect_status(response, 400).await?;
    assert!(
        body.contains(
            "the request is missing <code>login_request_id</code> and <code>state</code>."
        ),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_form_post_without_the_login_values_is_refused_with_400() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .post_login(&[
            ("username", "ada"),
            ("password", "ada-password"),
            ("state", "s"),
        ])
        .await?;

    let body = expect_status(response, 400).await?;
    assert!(
        body.contains("missing <code>login_request_id</code>."),
        "{body}"
    );
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn the_landing_page_names_the_app_and_lists_the_personas() -> anyhow::Result<()> {
    let (_fake, app) = start_stack(None).await?;

    let response = app.http.get(app.base_url.clone()).send().await?;

    let body = expect_status(response, 200).await?;
    assert!(body.contains("<h1>Your App</h1>"), "{body}");
    assert!(
        body.contains("<dt>Ada Lovelace <code>ada</code></dt>"),
        "{body}"
    );
    assert!(
        body.contains("<dt>Grace Hopper <code>grace</code></dt>"),
        "{body}"
    );
    assert!(body.contains("Minimal user: only sub and email"), "{body}");
    Ok(())
}

#[tokio::test]
async fn healthz_answers_ok() -> anyhow::Result<()> {
    let (_fake, app) = start_stack(None).await?;

    let response = app.http.get(app.base_url.join("healthz")?).send().await?;

    assert_eq!(expect_status(response, 200).await?, "ok");
    Ok(())
}

#[tokio::test]
async fn an_unknown_auto_login_persona_stops_start_up() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;

    let error = App::from_listener(listener, config(&fake.url, Some("mallory"))?).unwrap_err();

    assert!(matches!(error, AppError::UnknownAutoLoginPersona(ref name) if name == "mallory"));
    assert_eq!(
        error.to_string(),
        "auto_login names `mallory`, which is not a persona in the users file"
    );
    Ok(())
}

#[tokio::test]
async fn bind_listens_where_configured_and_reports_its_urls() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;

    let app = App::bind(config(&fake.url, None)?).await?;

    let address = app.local_addr();
    assert_ne!(address.port(), 0);
    assert_eq!(app.base_url().as_str(), format!("http://{address}/"));
    assert_eq!(app.login_url().as_str(), format!("http://{address}/login"));
    Ok(())
}

#[tokio::test]
async fn a_public_url_is_the_base_url() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;
    let mut config = config(&fake.url, None)?;
    config.public_url = Some(url::Url::parse("https://login.example.test/app")?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;

    let app = App::from_listener(listener, config)?;

    assert_eq!(app.base_url().as_str(), "https://login.example.test/app");
    assert_eq!(
        app.login_url().as_str(),
        "https://login.example.test/app/login"
    );
    Ok(())
}

#[tokio::test]
async fn a_repeated_state_is_refused_with_an_html_400() -> anyhow::Result<()> {
    let (fake, app) = start_stack(Some("ada")).await?;

    let response = app
        .get_login(
            &[
                ("login_request_id", "lri_1"),
                ("state", "a"),
                ("state", "b"),
            ],
            None,
        )
        .await?;

    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let body = expect_status(response, 400).await?;
    assert!(body.contains("This request cannot be read: "), "{body}");
    assert!(body.contains("duplicate field `state`"), "{body}");
    assert!(fake.user_posts().is_empty());
    Ok(())
}
