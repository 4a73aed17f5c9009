//! The sign-in form, the dev persona picker and the session cookie.

use crate::support::{
    TestApp, config, expect_redirect, expect_status, expected_callback, persona, session_cookie,
    start_stack,
};

#[tokio::test]
async fn the_login_page_is_a_form_carrying_the_escaped_login_values_and_a_persona_picker()
-> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .get_login(
            &[("login_request_id", "lri_1"), ("state", r#"a"b<c>&d'"#)],
            None,
        )
        .await?;

    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    );
    let body = expect_status(response, 200).await?;
    assert!(
        body.contains(r#"<form method="post" action="/login">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<input type="hidden" name="login_request_id" value="lri_1">"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#"<input type="hidden" name="state" value="a&quot;b&lt;c&gt;&amp;d&#x27;">"#
        ),
        "{body}"
    );
    assert!(!body.contains(r#"a"b<c>"#), "{body}");
    assert!(
        body.contains(r#"<label for="username">Username</label>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<label for="password">Password</label>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<input id="password" name="password" type="password""#),
        "{body}"
    );
    for name in ["ada", "grace", "linus"] {
        assert!(
            body.contains(&format!(r#"name="username" value="{name}""#)),
            "{body}"
        );
    }
    for password in ["ada-password", "grace-password", "linus-password"] {
        assert!(!body.contains(password), "no dev password on the page");
    }
    assert!(!body.contains("<script"), "no javascript");
    assert!(fake.token_requests().is_empty());
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn the_persona_picker_fills_in_the_username() -> anyhow::Result<()> {
    let (_fake, app) = start_stack(None).await?;

    let response = app
        .get_login(
            &[
                ("login_request_id", "lri_1"),
                ("state", "s"),
                ("username", "grace"),
            ],
            None,
        )
        .await?;

    let body = expect_status(response, 200).await?;
    assert!(body.contains(r#"required value="grace">"#), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_401_and_nothing_is_posted() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .post_login(&[
            ("username", "ada"),
            ("password", "grace-password"),
            ("login_request_id", "lri_1"),
            ("state", "s+1"),
        ])
        .await?;

    assert!(session_cookie(&response).is_none());
    let body = expect_status(response, 401).await?;
    assert!(
        body.contains(r#"<p class="error" role="alert">Unknown username or wrong password.</p>"#),
        "{body}"
    );
    // The form comes back with the same login values and the username kept.
    assert!(body.contains(r#"name="state" value="s+1""#), "{body}");
    assert!(body.contains(r#"required value="ada">"#), "{body}");
    assert!(fake.token_requests().is_empty());
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unknown_username_is_refused_like_a_wrong_password() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .post_login(&[
            ("username", "mallory"),
            ("password", "mallory-password"),
            ("login_request_id", "lri_1"),
            ("state", "s"),
        ])
        .await?;

    let body = expect_status(response, 401).await?;
    assert!(
        body.contains("Unknown username or wrong password."),
        "{body}"
    );
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn the_right_password_redirects_and_sets_a_session_cookie() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .post_login(&[
            ("username", "grace"),
            ("password", "grace-password"),
            ("login_request_id", "lri_10"),
            ("state", "st/ate=="),
        ])
        .await?;

    assert_eq!(
        expect_redirect(&response)?,
        expected_callback(&fake, "st/ate==")?
    );
    let (_pair, header) = session_cookie(&response).expect("a session cookie");
    assert!(
        header.ends_with("; HttpOnly; SameSite=Lax; Path=/"),
        "{header}"
    );
    let posts = fake.user_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].login_request_id, "lri_10");
    assert_eq!(
        posts[0].body,
        serde_json::to_value(&persona("grace")?.claims)?
    );
    Ok(())
}

#[tokio::test]
async fn a_second_get_with_the_session_cookie_goes_straight_through() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;
    let response = app
        .post_login(&[
            ("username", "linus"),
            ("password", "linus-password"),
            ("login_request_id", "lri_20"),
            ("state", "first"),
        ])
        .await?;
    expect_redirect(&response)?;
    let (cookie, _header) = session_cookie(&response).expect("a session cookie");

    let response = app
        .get_login(
            &[("login_request_id", "lri_21"), ("state", "second")],
            Some(&cookie),
        )
        .await?;

    assert_eq!(
        expect_redirect(&response)?,
        expected_callback(&fake, "second")?
    );
    let posts = fake.user_posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].login_request_id, "lri_21");
    assert_eq!(
        posts[1].body,
        serde_json::json!({"sub": "ext-usr-linus-0003", "email": "linus@kernels.example"})
    );
    // One token served both logins.
    assert_eq!(fake.token_requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_forged_session_cookie_gets_the_form() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;

    let response = app
        .get_login(
            &[("login_request_id", "lri_1"), ("state", "s")],
            Some("your_app_session=00ff"),
        )
        .await?;

    let body = expect_status(response, 200).await?;
    assert!(
        body.contains(r#"<form method="post" action="/login">"#),
        "{body}"
    );
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failed_handoff_after_a_good_password_still_signs_the_user_in() -> anyhow::Result<()> {
    let (fake, app) = start_stack(None).await?;
    fake.script_user_answers([(
        reqwest::StatusCode::NOT_FOUND,
        crate::support::gateway_error(5, "login request not found", "NOT_FOUND"),
    )]);

    let response = app
        .post_login(&[
            ("username", "ada"),
            ("password", "ada-password"),
            ("login_request_id", "lri_gone"),
            ("state", "s"),
        ])
        .await?;

    let (cookie, _header) = session_cookie(&response).expect("signed in to Your App");
    let body = expect_status(response, 502).await?;
    assert!(
        body.contains("<dt>message</dt><dd>login request not found</dd>"),
        "{body}"
    );

    // A fresh login request from Scalekit then goes straight through.
    let response = app
        .get_login(
            &[("login_request_id", "lri_new"), ("state", "s2")],
            Some(&cookie),
        )
        .await?;
    assert_eq!(expect_redirect(&response)?, expected_callback(&fake, "s2")?);
    Ok(())
}

#[tokio::test]
async fn auto_login_ignores_the_session_and_the_form() -> anyhow::Result<()> {
    let fake = crate::support::FakeScalekit::start(3600).await?;
    let app = TestApp::start(config(&fake.url, Some("linus"))?).await?;

    let response = app
        .get_login(&[("login_request_id", "lri_1"), ("state", "s")], None)
        .await?;

    expect_redirect(&response)?;
    assert!(session_cookie(&response).is_none());
    assert_eq!(fake.user_posts()[0].body["sub"], "ext-usr-linus-0003");
    Ok(())
}
