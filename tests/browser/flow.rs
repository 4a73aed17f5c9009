//! A person in the browser: types a password on Your App's login page, allows or denies on the
//! emulator's consent page, meets the hosted error page, and skips consent once it is remembered.
//!
//! The MCP client's side (registration, the authorize URL, the code exchange) is played by the
//! test with reqwest; its redirect URI is a loopback port nothing listens on, so the browser's
//! journey ends on Chromium's "cannot reach" page with the client's query in the address.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testbed_stack::{ConsentMode, Stack};
use url::Url;

use crate::harness::{free_port, run, save_screenshot, wait_for_url, wait_for_url_where};
use crate::support::spawn_stack_with;

/// Scopes a person can recognise on the consent page, next to the MCP server's own.
const SCOPES: &str = "openid profile email offline_access mcp:read";

/// The stack with the login form showing (no auto-login) and consent asked for on a page.
async fn stack_with_consent_page(manual_clock: bool) -> Stack {
    spawn_stack_with("ada", |config| {
        config.auto_login = None;
        config.consent = Some(ConsentMode::Prompt);
        config.manual_clock = manual_clock;
    })
    .await
}

/// The MCP client the test plays: registered by DCR, with a redirect URI nothing serves.
struct McpClient {
    http: reqwest::Client,
    environment: String,
    resource_id: String,
    server_url: String,
    client_id: String,
    redirect_uri: Url,
}

/// One authorization request: the client's `state` and PKCE verifier.
struct Authorization {
    url: Url,
    state: String,
    verifier: String,
}

impl McpClient {
    async fn register(stack: &Stack) -> anyhow::Result<McpClient> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let environment = stack
            .environment_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let resource = stack
            .fixtures
            .environment
            .resources
            .first()
            .context("the fixtures have a resource")?;
        let redirect_uri = Url::parse(&format!("http://127.0.0.1:{}/callback", free_port()?))?;
        let response = http
            .post(format!(
                "{environment}/api/v1/resources/{}/clients:register",
                resource.id
            ))
            .json(&json!({
                "client_name": "Browser Test Client",
                "redirect_uris": [redirect_uri.as_str()],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "DCR answered {}",
            response.status()
        );
        let registered: Value = response.json().await?;
        let client_id = registered["client_id"]
            .as_str()
            .context("DCR returned a client_id")?
            .to_owned();
        Ok(McpClient {
            http,
            environment,
            resource_id: resource.id.clone(),
            server_url: resource.resource_indicator().to_owned(),
            client_id,
            redirect_uri,
        })
    }

    /// The issuer the emulator names in `iss` (RFC 9207) for this resource.
    fn issuer(&self) -> String {
        format!("{}/resources/{}", self.environment, self.resource_id)
    }

    /// An authorize URL with PKCE S256 and `resource`, as a strict MCP client builds it.
    fn authorize(&self, state: &str) -> anyhow::Result<Authorization> {
        let verifier =
            format!("browser-test-verifier-{state}-0123456789abcdefghijklmnopqrstuvwxyz");
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let mut url = Url::parse(&format!("{}/oauth/authorize", self.environment))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", self.redirect_uri.as_str())
            .append_pair("scope", SCOPES)
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &self.server_url);
        Ok(Authorization {
            url,
            state: state.to_owned(),
            verifier,
        })
    }

    /// Exchanges a code at the token endpoint and returns the token response.
    async fn exchange(&self, code: &str, authorization: &Authorization) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.environment))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", authorization.verifier.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("client_id", self.client_id.as_str()),
                ("resource", self.server_url.as_str()),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(
            status == 200,
            "the token endpoint answered {status}: {body}"
        );
        Ok(body)
    }
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Types `username` and `password` into Your App's form and presses "Sign in".
async fn sign_in(browser: &Client, username: &str, password: &str) -> anyhow::Result<()> {
    browser
        .find(Locator::Id("username"))
        .await?
        .send_keys(username)
        .await?;
    browser
        .find(Locator::Id("password"))
        .await?
        .send_keys(password)
        .await?;
    browser.find(Locator::Id("sign_in")).await?.click().await?;
    Ok(())
}

/// Navigates to `url` when the chain of redirects it starts ends at the client's redirect URI:
/// nothing serves that, so Chromium reports the navigation as failed, which is expected here.
async fn goto_expecting_the_unserved_redirect(browser: &Client, url: &Url) -> anyhow::Result<()> {
    match browser.goto(url.as_str()).await {
        Ok(()) => Ok(()),
        Err(error) if error.to_string().contains("ERR_CONNECTION_REFUSED") => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Waits for an element, longer than fantoccini's instant `find`: the page may still load.
async fn wait_for(browser: &Client, id: &str) -> anyhow::Result<fantoccini::elements::Element> {
    let found = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await;
    match found {
        Ok(element) => Ok(element),
        Err(error) => {
            let url = browser.current_url().await?;
            Err(error).with_context(|| format!("waiting for #{id} on {url}"))
        }
    }
}

/// Picks `username` in the dev persona picker, which reloads the form with the username filled
/// in and the cursor in the password field, types `password` there and presses "Sign in".
async fn sign_in_with_the_picker(
    browser: &Client,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    browser
        .find(Locator::Css(&format!(
            "button[name=\"username\"][value=\"{username}\"]"
        )))
        .await?
        .click()
        .await?;
    let reloaded = format!("the login page reloaded with username={username}");
    wait_for_url_where(browser, &reloaded, |url| {
        url.query_pairs()
            .any(|(name, value)| name == "username" && value == username)
    })
    .await?;
    let picked = wait_for(browser, "username").await?;
    assert_eq!(picked.prop("value").await?.as_deref(), Some(username));
    let focused = browser.active_element().await?;
    assert_eq!(focused.attr("id").await?.as_deref(), Some("password"));
    focused.send_keys(password).await?;
    browser.find(Locator::Id("sign_in")).await?.click().await?;
    Ok(())
}

/// How the person fills in Your App's form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Typing {
    /// Username and password, by hand; the login page is saved as `login.png` first.
    Everything,
    /// The persona picker for the username, then the password.
    Picker,
}

/// From the authorize URL to the consent page: Your App's form, then the emulator's page.
async fn sign_in_to_consent(
    browser: &Client,
    authorization: &Authorization,
    typing: Typing,
) -> anyhow::Result<()> {
    browser.goto(authorization.url.as_str()).await?;
    wait_for(browser, "password").await?;
    ensure!(
        browser.title().await? == "Sign in to Your App",
        "not Your App's login page"
    );
    match typing {
        Typing::Everything => {
            save_screenshot(browser, "login").await?;
            sign_in(browser, "ada", "ada-password").await?;
        }
        Typing::Picker => sign_in_with_the_picker(browser, "ada", "ada-password").await?,
    }
    wait_for(browser, "approve").await?;
    Ok(())
}

#[tokio::test]
async fn a_person_types_the_password_and_allows_and_the_client_gets_a_working_code()
-> anyhow::Result<()> {
    run("allow", |browser| async move {
        let stack = stack_with_consent_page(false).await;
        let client = McpClient::register(&stack).await?;
        let authorization = client.authorize("browser-allow")?;

        sign_in_to_consent(&browser, &authorization, Typing::Everything).await?;

        let resource = &stack.fixtures.environment.resources[0];
        let text = |id: &'static str| {
            let browser = browser.clone();
            async move { browser.find(Locator::Id(id)).await?.text().await }
        };
        assert_eq!(text("client_name").await?, "Browser Test Client");
        assert_eq!(text("resource_name").await?, resource.name);
        assert_eq!(text("user").await?, "ada@analytical-engines.example");
        assert_eq!(text("redirect_host").await?, "127.0.0.1");
        let environment_domain = stack
            .environment_url
            .host_str()
            .map(|host| match stack.environment_url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
            .context("the environment's host")?;
        assert_eq!(text("environment_domain").await?, environment_domain);
        let scopes = text("scopes").await?;
        for scope in SCOPES.split(' ') {
            assert!(scopes.contains(scope), "{scope} missing from {scopes}");
        }
        save_screenshot(&browser, "consent").await?;

        browser.find(Locator::Id("approve")).await?.click().await?;

        let landed = wait_for_url(&browser, client.redirect_uri.as_str()).await?;
        let answer = query(&landed);
        assert_eq!(answer["state"], authorization.state);
        assert_eq!(answer["iss"], client.issuer());
        let code = answer.get("code").context("a code at the redirect URI")?;
        let tokens = client.exchange(code, &authorization).await?;
        assert!(tokens["access_token"].is_string(), "{tokens}");
        let mut granted: Vec<&str> = tokens["scope"]
            .as_str()
            .context("the token response names the scopes")?
            .split(' ')
            .collect();
        granted.sort_unstable();
        let mut asked: Vec<&str> = SCOPES.split(' ').collect();
        asked.sort_unstable();
        assert_eq!(granted, asked);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_person_who_picks_a_persona_and_denies_returns_to_the_client_with_access_denied()
-> anyhow::Result<()> {
    run("deny", |browser| async move {
        let stack = stack_with_consent_page(false).await;
        let client = McpClient::register(&stack).await?;
        let authorization = client.authorize("browser-deny")?;

        sign_in_to_consent(&browser, &authorization, Typing::Picker).await?;
        browser.find(Locator::Id("deny")).await?.click().await?;

        let landed = wait_for_url(&browser, client.redirect_uri.as_str()).await?;
        let answer = query(&landed);
        assert_eq!(answer["error"], "access_denied");
        assert_eq!(answer["state"], authorization.state);
        assert_eq!(answer["iss"], client.issuer());
        assert!(!answer.contains_key("code"), "{landed}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_sign_in_that_reaches_the_callback_after_expiry_shows_the_invalid_state_page()
-> anyhow::Result<()> {
    run("expiry", |browser| async move {
        let stack = stack_with_consent_page(true).await;
        let clock = stack.clock.clone().context("a manual clock")?;
        let client = McpClient::register(&stack).await?;
        let authorization = client.authorize("browser-expiry")?;
        let environment = client.environment.clone();

        // The browser's trip to the partner callback is held for a moment (a delay fault), and
        // the clock jumps past the login request's 10 minutes as soon as Your App has posted
        // the user: the person arrives at the callback after the sign-in expired.
        let fault = client
            .http
            .post(format!("{environment}/_emulator/faults"))
            .json(&json!({
                "method": "GET",
                "path": "/sso/v1/connections/*/partner:callback",
                "delay_ms": 2000,
            }))
            .send()
            .await?;
        ensure!(
            fault.status() == 201,
            "arming the fault: {}",
            fault.status()
        );
        browser.goto(authorization.url.as_str()).await?;
        wait_for(&browser, "password").await?;
        let http = client.http.clone();
        let expire_after_the_post = async move {
            let pending = format!("{environment}/_emulator/login-requests");
            for _ in 0..200 {
                let listed: Value = http.get(&pending).send().await?.json().await?;
                if listed["login_requests"][0]["user_submitted"] == json!(true) {
                    clock.advance(601);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            bail!("Your App never posted the user")
        };
        let (signed_in, expired): (anyhow::Result<()>, anyhow::Result<()>) = tokio::join!(
            sign_in(&browser, "ada", "ada-password"),
            expire_after_the_post
        );
        signed_in?;
        expired?;

        let error = wait_for(&browser, "error").await?;
        assert_eq!(error.text().await?, "invalid_state");
        let description = browser
            .find(Locator::Id("error_description"))
            .await?
            .text()
            .await?;
        assert_eq!(description, "the sign-in request expired");
        assert!(
            browser
                .title()
                .await?
                .starts_with("Sign-in error: invalid_state"),
            "{}",
            browser.title().await?
        );
        // The callback sent the browser on to the environment's error page, whose URL names
        // the error, as Scalekit's does.
        let url = browser.current_url().await?;
        assert_eq!(url.path(), "/error", "{url}");
        assert!(
            url.query_pairs()
                .any(|(name, value)| name == "error" && value == "invalid_state"),
            "{url}"
        );
        save_screenshot(&browser, "error").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_remembered_consent_skips_the_page_on_the_second_sign_in() -> anyhow::Result<()> {
    run("remembered", |browser| async move {
        let stack = stack_with_consent_page(false).await;
        let client = McpClient::register(&stack).await?;
        let first = client.authorize("browser-first")?;
        sign_in_to_consent(&browser, &first, Typing::Picker).await?;
        browser.find(Locator::Id("approve")).await?.click().await?;
        wait_for_url(&browser, client.redirect_uri.as_str()).await?;

        // Your App remembers the person (its session cookie) and the emulator remembers the
        // consent: the second sign-in goes straight back to the client, no page in between.
        let second = client.authorize("browser-second")?;
        goto_expecting_the_unserved_redirect(&browser, &second.url).await?;

        let landed = wait_for_url(&browser, client.redirect_uri.as_str()).await?;
        let answer = query(&landed);
        assert_eq!(answer["state"], second.state);
        assert_eq!(answer["iss"], client.issuer());
        let code = answer.get("code").context("a code at the redirect URI")?;
        let tokens = client.exchange(code, &second).await?;
        assert!(tokens["access_token"].is_string(), "{tokens}");
        Ok(())
    })
    .await
}
