//! The user agent's pure pieces: `Location` resolution, recognising the redirect URI, and the
//! authorization-response checks (RFC 6749 §4.1.2, RFC 9207 §2.4).

use url::Url;

use crate::DriverError;

/// Resolves a `Location` header value (absolute or relative, RFC 9110 §10.2.2) against the URL
/// of the response that carried it.
pub fn resolve_location(current: &Url, location: &str) -> Result<Url, DriverError> {
    current
        .join(location.trim())
        .map_err(|_| DriverError::AuthorizationRedirect {
            reason: format!("unparseable Location {location:?}"),
        })
}

/// Whether a URL is the client's redirect URI: same scheme, host, port and path (the query is
/// the authorization response).
pub fn is_redirect_uri(candidate: &Url, redirect_uri: &Url) -> bool {
    candidate.scheme() == redirect_uri.scheme()
        && candidate.host_str() == redirect_uri.host_str()
        && candidate.port_or_known_default() == redirect_uri.port_or_known_default()
        && candidate.path() == redirect_uri.path()
}

/// What the driver expects of the authorization response.
#[derive(Debug, Clone, Copy)]
pub struct CallbackExpectation<'a> {
    /// The `state` the driver sent.
    pub state: &'a str,
    /// The AS metadata `issuer`.
    pub issuer: &'a str,
    /// Whether the AS advertised `authorization_response_iss_parameter_supported`.
    pub iss_supported: bool,
}

/// Checks the authorization response at the redirect URI and returns the code. Order matters:
/// RFC 9207 `iss` is checked first (a response from the wrong issuer must not even have its error
/// shown), then `error`, then `state`, then `code`. A repeated parameter is refused.
pub fn check_callback(
    callback: &Url,
    expected: CallbackExpectation<'_>,
) -> Result<String, DriverError> {
    let single = |name: &str| -> Result<Option<String>, DriverError> {
        let mut values = callback
            .query_pairs()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned());
        let first = values.next();
        if values.next().is_some() {
            return Err(DriverError::AuthorizationRedirect {
                reason: format!("the authorization response repeats the {name} parameter"),
            });
        }
        Ok(first)
    };
    match single("iss")? {
        None if expected.iss_supported => return Err(DriverError::MissingIss),
        Some(found) if found != expected.issuer => {
            return Err(DriverError::IssMismatch {
                expected: expected.issuer.to_owned(),
                found,
            });
        }
        _ => {}
    }
    if let Some(error) = single("error")? {
        return Err(DriverError::AuthorizationError {
            error,
            error_description: single("error_description")?,
        });
    }
    if single("state")?.as_deref() != Some(expected.state) {
        return Err(DriverError::StateMismatch);
    }
    single("code")?.ok_or_else(|| DriverError::AuthorizationRedirect {
        reason: "the authorization response has neither code nor error".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "http://127.0.0.1:9/resources/res_1";

    fn expectation(iss_supported: bool) -> CallbackExpectation<'static> {
        CallbackExpectation {
            state: "our-state",
            issuer: ISSUER,
            iss_supported,
        }
    }

    fn callback(query: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:33418/callback?{query}")).unwrap()
    }

    fn iss() -> String {
        format!(
            "iss={}",
            url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect::<String>()
        )
    }

    #[test]
    fn relative_location_is_resolved_against_the_current_url() {
        let current = Url::parse("http://127.0.0.1:7/oauth/authorize?x=1").unwrap();
        assert_eq!(
            resolve_location(&current, "/login?lri=1").unwrap().as_str(),
            "http://127.0.0.1:7/login?lri=1"
        );
        assert_eq!(
            resolve_location(&current, "consent").unwrap().as_str(),
            "http://127.0.0.1:7/oauth/consent"
        );
    }

    #[test]
    fn absolute_location_replaces_the_current_url() {
        let current = Url::parse("http://127.0.0.1:7/oauth/authorize").unwrap();
        assert_eq!(
            resolve_location(&current, "http://127.0.0.1:8/login?state=s")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8/login?state=s"
        );
    }

    #[test]
    fn redirect_uri_matches_on_scheme_host_port_and_path() {
        let redirect = Url::parse("http://127.0.0.1:33418/callback").unwrap();
        assert!(is_redirect_uri(&callback("code=1"), &redirect));
        for other in [
            "http://127.0.0.1:33419/callback?code=1",
            "http://localhost:33418/callback?code=1",
            "https://127.0.0.1:33418/callback?code=1",
            "http://127.0.0.1:33418/callback/x?code=1",
        ] {
            assert!(
                !is_redirect_uri(&Url::parse(other).unwrap(), &redirect),
                "{other}"
            );
        }
    }

    #[test]
    fn good_response_yields_the_code() {
        let url = callback(&format!("code=c1&state=our-state&{}", iss()));
        assert_eq!(check_callback(&url, expectation(true)).unwrap(), "c1");
    }

    #[test]
    fn missing_iss_is_refused_only_when_advertised() {
        let url = callback("code=c1&state=our-state");
        assert!(matches!(
            check_callback(&url, expectation(true)),
            Err(DriverError::MissingIss)
        ));
        assert_eq!(check_callback(&url, expectation(false)).unwrap(), "c1");
    }

    #[test]
    fn wrong_iss_is_refused_even_when_not_advertised() {
        let url = callback(
            "code=c1&state=our-state&iss=http%3A%2F%2F127.0.0.1%3A9%2Fresources%2Fres_1%2F",
        );
        match check_callback(&url, expectation(false)) {
            Err(DriverError::IssMismatch { expected, found }) => {
                assert_eq!(expected, ISSUER);
                assert_eq!(found, format!("{ISSUER}/"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn iss_is_checked_before_the_error_is_reported() {
        let url = callback("error=access_denied&state=our-state&iss=http%3A%2F%2Fevil");
        assert!(matches!(
            check_callback(&url, expectation(true)),
            Err(DriverError::IssMismatch { .. })
        ));
        let url = callback("error=access_denied&state=our-state");
        assert!(matches!(
            check_callback(&url, expectation(true)),
            Err(DriverError::MissingIss)
        ));
    }

    #[test]
    fn error_with_good_iss_is_reported_with_its_description() {
        let url = callback(&format!(
            "error=access_denied&error_description=user+said+no&state=our-state&{}",
            iss()
        ));
        match check_callback(&url, expectation(true)) {
            Err(DriverError::AuthorizationError {
                error,
                error_description,
            }) => {
                assert_eq!(error, "access_denied");
                assert_eq!(error_description.as_deref(), Some("user said no"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn state_mismatch_and_missing_state_are_refused() {
        for query in [
            format!("code=c1&state=other&{}", iss()),
            format!("code=c1&{}", iss()),
        ] {
            assert!(matches!(
                check_callback(&callback(&query), expectation(true)),
                Err(DriverError::StateMismatch)
            ));
        }
    }

    #[test]
    fn repeated_code_is_refused() {
        let url = callback(&format!("code=c1&code=c2&state=our-state&{}", iss()));
        assert!(matches!(
            check_callback(&url, expectation(true)),
            Err(DriverError::AuthorizationRedirect { .. })
        ));
    }
}
