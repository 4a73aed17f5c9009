//! The ceiling: how many RS256 access tokens one core signs per second with the emulator's own
//! signer (aws-lc-rs, RSA-2048, the key parsed once). A flow makes exactly one signature, so no
//! flow rate and no `client_credentials` rate can beat this figure on the same core. For
//! reference, the same tokens through `jsonwebtoken::encode`, which parses and checks the key on
//! every signature (how the emulator signed before the profile in docs/performance.md).

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use scalekit_emulator::Signer;
use scalekit_emulator::tokens::AccessTokenClaims;

use crate::BenchError;
use crate::process::own_cpu_time;

/// Claims shaped like a flow's access token (same sizes, so the JSON and base64 work match).
pub fn sample_claims() -> AccessTokenClaims {
    let scopes: Vec<String> = [
        "profile",
        "email",
        "offline_access",
        "mcp:read",
        "mcp:write",
    ]
    .iter()
    .map(|scope| (*scope).to_owned())
    .collect();
    AccessTokenClaims {
        iss: "http://127.0.0.1:8400".to_owned(),
        aud: vec![
            "http://127.0.0.1:8402/mcp".to_owned(),
            "res_81920374650192839".to_owned(),
        ],
        sub: "usr_123456789012345678".to_owned(),
        xuid: "bench-user-7".to_owned(),
        scope: scopes.join(" "),
        scopes,
        client_id: "m2m_123456789012345678".to_owned(),
        jti: "tkn_123456789012345678".to_owned(),
        sid: "ses_123456789012345678".to_owned(),
        iat: 1_800_000_000,
        nbf: 1_800_000_000,
        exp: 1_800_003_600,
        email: Some("bench-user-7@example.test".to_owned()),
        custom_claims: None,
        oid: None,
        roles: Vec::new(),
    }
}

/// Signatures per second of CPU time on one core, two ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CeilingRates {
    /// Through the emulator's own `Signer::sign`: the ceiling.
    pub signer: f64,
    /// Through `jsonwebtoken::encode` with the same key, parsed on every signature.
    pub jsonwebtoken_encode: f64,
}

/// Signs on the calling thread for `duration` each way, after a short warm-up. The rate is per
/// second of this process's CPU time (it is single-threaded here), so another process sharing
/// the core does not lower it. Run it on the emulator's core (`testbed-bench ceiling`).
pub fn signing_rate(duration: Duration) -> Result<CeilingRates, BenchError> {
    let signer = Signer::generate()?;
    let claims = sample_claims();
    let rate = rate_per_cpu_second(duration, || {
        signer.sign(&claims)?;
        Ok(())
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signer.kid().to_owned());
    let key = EncodingKey::from_rsa_pem(signer.private_key_pem().expose().as_bytes()).map_err(
        |error| BenchError::Protocol {
            step: "ceiling",
            message: format!("jsonwebtoken refused the key: {error}"),
        },
    )?;
    let jsonwebtoken_encode = rate_per_cpu_second(duration, || {
        jsonwebtoken::encode(&header, &claims, &key).map_err(|error| BenchError::Protocol {
            step: "ceiling",
            message: format!("jsonwebtoken refused to sign: {error}"),
        })?;
        Ok(())
    })?;
    Ok(CeilingRates {
        signer: rate,
        jsonwebtoken_encode,
    })
}

fn rate_per_cpu_second(
    duration: Duration,
    mut sign: impl FnMut() -> Result<(), BenchError>,
) -> Result<f64, BenchError> {
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(200) {
        sign()?;
    }
    let cpu_before = own_cpu_time()?;
    let begin = Instant::now();
    let mut signatures: u64 = 0;
    while begin.elapsed() < duration {
        sign()?;
        signatures += 1;
    }
    let cpu = own_cpu_time()?.saturating_sub(cpu_before).as_secs_f64();
    // /proc counts in 10 ms ticks: fall back to wall time for very short runs.
    let seconds = if cpu >= 0.1 {
        cpu
    } else {
        begin.elapsed().as_secs_f64()
    };
    Ok(signatures as f64 / seconds)
}
