//! The flow inspector in Chromium: `/_emulator/ui` is open while the driver runs a whole flow,
//! the flow and its hops appear without a reload, a hop opens, and "Copy as curl" shows the
//! command with the secrets as `<redacted>`. Saves `target/browser/inspector.png`. With a
//! control token the page opens from its `?token=` link and stays live on its cookie.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fantoccini::{Client, Locator};
use mcp_driver::DriverConfig;
use serde_json::Value;
use url::Url;

use crate::harness::{free_port, run, save_screenshot};
use crate::support::{spawn_stack, spawn_stack_with};

/// Polls `probe` until it returns `Some`, for up to ten seconds.
async fn eventually<T, Probe, Answer>(what: &str, mut probe: Probe) -> anyhow::Result<T>
where
    Probe: FnMut() -> Answer,
    Answer: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("waited ten seconds for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The element's text. The page redraws on every live update, so an element found may be
/// replaced before it is read: that is retried, not a failure.
async fn text_of(browser: &Client, css: &str) -> anyhow::Result<String> {
    eventually(css, || async {
        let Ok(element) = browser.find(Locator::Css(css)).await else {
            return Ok(None);
        };
        Ok(element.text().await.ok())
    })
    .await
}

/// Clicks the element with this id, again if a live redraw replaced it in between.
async fn click(browser: &Client, id: &str) -> anyhow::Result<()> {
    eventually(id, || async {
        let Ok(element) = browser.find(Locator::Id(id)).await else {
            return Ok(None);
        };
        Ok(element.click().await.ok())
    })
    .await
}

#[tokio::test]
async fn the_inspector_draws_a_running_flow_live_and_copies_a_hop_as_curl() -> anyhow::Result<()> {
    let stack = spawn_stack("ada").await;
    let environment = stack
        .environment_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let mcp_url = stack.mcp_url.clone();
    run("inspector", move |browser| async move {
        let _stack = stack;
        browser.goto(&format!("{environment}/_emulator/ui")).await?;
        eventually("the event stream to connect", || async {
            Ok((text_of(&browser, "#live").await? == "live").then_some(()))
        })
        .await?;
        assert_eq!(
            text_of(&browser, "#flow-list").await?,
            "No flow yet: start one from an MCP client."
        );
        // Marks this page load: a reload would lose it.
        browser
            .execute("window.loadedOnce = true; return true;", Vec::new())
            .await?;

        let mut config = DriverConfig::new(mcp_url);
        config.redirect_uri = Url::parse(&format!("http://127.0.0.1:{}/callback", free_port()?))?;
        config.extra_scopes = vec!["openid".to_owned(), "offline_access".to_owned()];
        let report = mcp_driver::run_flow(&config)
            .await
            .context("the driver's flow")?;

        let http = reqwest::Client::new();
        let listed: Value = http
            .get(format!("{environment}/_emulator/flows"))
            .send()
            .await?
            .json()
            .await?;
        let id = listed["flows"][0]["id"]
            .as_str()
            .context("the flow the driver ran")?
            .to_owned();
        let flow: Value = http
            .get(format!("{environment}/_emulator/flows/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let hops = flow["hop_list"].as_array().context("hop_list")?;
        let exchange = hops
            .iter()
            .find(|hop| hop["summary"] == "POST /oauth/token (authorization_code)")
            .context("the code exchange hop")?;
        let wanted_hops = hops.len();
        // Every piece of the stack is in the one timeline, tied by the keys it learned.
        for (from, to, summary) in [
            ("mcp_client", "mcp_server", "POST /mcp initialize"),
            ("browser", "emulator", "GET /oauth/authorize"),
            ("browser", "your_app", "GET /login"),
            (
                "your_app",
                "emulator",
                "POST /oauth/token (client_credentials)",
            ),
            (
                "mcp_client",
                "emulator",
                "POST /oauth/token (authorization_code)",
            ),
            ("mcp_client", "mcp_server", "POST /mcp tools/call"),
        ] {
            ensure!(
                hops.iter()
                    .any(|hop| hop["from"] == from && hop["to"] == to && hop["summary"] == summary),
                "no {from} → {to} {summary} in {flow}"
            );
        }

        // The page catches up by itself.
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id(&format!("flow-{id}")))
            .await
            .context("the flow in the list")?;
        eventually("every hop drawn", || async {
            let drawn = browser.find_all(Locator::Css("#hops .hop")).await?.len();
            Ok((drawn == wanted_hops).then_some(()))
        })
        .await?;
        let still_the_same_page = browser
            .execute("return window.loadedOnce === true;", Vec::new())
            .await?;
        ensure!(
            still_the_same_page == Value::Bool(true),
            "the page was reloaded"
        );
        let title = text_of(&browser, "#flow-title").await?;
        assert!(title.starts_with(&format!("Flow {id}")), "{title}");

        let seq = exchange["seq"].as_u64().context("seq")?;
        click(&browser, &format!("hop-{seq}")).await?;
        assert_eq!(
            text_of(&browser, "#detail-title").await?,
            format!("#{seq} POST /oauth/token (authorization_code)")
        );
        let checks = text_of(&browser, "#checks").await?;
        for check in [
            "✓ code single-use and unexpired",
            "✓ PKCE S256 verifier matches",
            "✓ resource matches",
        ] {
            assert!(checks.contains(check), "{checks}");
        }
        click(&browser, "copy-curl").await?;
        let curl = eventually("the curl command", || async {
            let shown = text_of(&browser, "#curl").await?;
            Ok((!shown.is_empty()).then_some(shown))
        })
        .await?;
        assert_eq!(curl, exchange["curl"].as_str().unwrap_or_default());
        assert!(
            curl.starts_with(&format!(
                "curl -i '{environment}/oauth/token' \\\n  -X 'POST'"
            )),
            "{curl}"
        );
        assert!(curl.contains("code=<redacted>"), "{curl}");
        assert!(curl.contains("code_verifier=<redacted>"), "{curl}");

        let source = browser.source().await?;
        let mut tokens = vec![report.tokens.access_token.expose()];
        tokens.extend(
            report
                .tokens
                .refresh_token
                .as_ref()
                .map(|token| token.expose()),
        );
        for token in tokens {
            ensure!(!source.contains(token), "a token is on the page");
        }
        // Wide enough for the timeline and the hop side by side, from the top.
        browser.set_window_size(1600, 1300).await?;
        browser
            .execute("window.scrollTo(0, 0); return true;", Vec::new())
            .await?;
        let saved = save_screenshot(&browser, "inspector").await?;
        eprintln!("saved {}", saved.display());
        Ok(())
    })
    .await
}

/// With a control token, a person opens the inspector from its link once: the token moves into
/// a cookie and out of the address bar, and the page's reads and its event stream carry the
/// cookie, so a flow still appears live.
#[tokio::test]
async fn with_a_control_token_the_inspector_opens_from_its_link_and_stays_live()
-> anyhow::Result<()> {
    const TOKEN: &str = "ctl-browser-0123456789";
    let stack = spawn_stack_with("ada", |config| {
        config.fixtures.environment.control_token = Some(scalekit_wire::Secret::new(TOKEN));
    })
    .await;
    let environment = stack
        .environment_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let mcp_url = stack.mcp_url.clone();
    run("inspector-token", move |browser| async move {
        let _stack = stack;
        browser
            .goto(&format!("{environment}/_emulator/ui?token={TOKEN}"))
            .await?;
        eventually("the event stream to connect", || async {
            Ok((text_of(&browser, "#live").await? == "live").then_some(()))
        })
        .await?;
        let address = browser.current_url().await?;
        ensure!(
            address.as_str() == format!("{environment}/_emulator/ui"),
            "the token stayed in the address bar: {address}"
        );

        let mut config = DriverConfig::new(mcp_url);
        config.redirect_uri = Url::parse(&format!("http://127.0.0.1:{}/callback", free_port()?))?;
        mcp_driver::run_flow(&config)
            .await
            .context("the driver's flow")?;
        let listed: Value = reqwest::Client::new()
            .get(format!("{environment}/_emulator/flows"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let id = listed["flows"][0]["id"]
            .as_str()
            .context("the flow the driver ran")?
            .to_owned();
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id(&format!("flow-{id}")))
            .await
            .context("the flow in the list, drawn live")?;
        Ok(())
    })
    .await
}
