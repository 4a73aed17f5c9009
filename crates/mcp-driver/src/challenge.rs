//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1, RFC 6750 §3) for the MCP server's 401 challenge.
//!
//! A header value may carry several challenges (`Basic realm="x", Bearer scope="a b"`); each has
//! a scheme and either a token68 or a list of `name=value` parameters whose values may be quoted
//! strings containing commas and backslash-escaped quotes.

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare case-insensitively).
    pub scheme: String,
    /// The token68 form, if the challenge used it instead of parameters.
    pub token68: Option<String>,
    /// Parameters in order, names lowercased (they are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of a parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What the driver uses from a Bearer challenge (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `resource_metadata`: where the protected-resource metadata lives.
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the server asks for, space-separated.
    pub scope: Option<String>,
    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
}

impl BearerChallenge {
    /// Finds the first `Bearer` challenge among all header values, if any.
    pub fn from_header_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        values
            .into_iter()
            .flat_map(parse_challenges)
            .find(|challenge| challenge.scheme.eq_ignore_ascii_case("bearer"))
            .map(|challenge| Self {
                resource_metadata: challenge.param("resource_metadata").map(str::to_owned),
                scope: challenge.param("scope").map(str::to_owned),
                error: challenge.param("error").map(str::to_owned),
            })
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Characters allowed in a token68 before its trailing `=` padding (RFC 9110 §11.2).
fn is_token68_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}

/// A byte cursor over one header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    fn skip_whitespace_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.position += 1;
        }
    }

    fn take_while(&mut self, predicate: impl Fn(u8) -> bool) -> String {
        let start = self.position;
        while self.peek().is_some_and(&predicate) {
            self.position += 1;
        }
        String::from_utf8_lossy(&self.bytes[start..self.position]).into_owned()
    }

    /// A quoted-string starting at the opening quote; backslash escapes the next byte.
    fn quoted_string(&mut self) -> String {
        let mut value = Vec::new();
        self.position += 1;
        while let Some(byte) = self.peek() {
            self.position += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.position += 1;
                    }
                }
                other => value.push(other),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }

    /// Skips to the next comma at the top level (used to recover from malformed input).
    fn skip_to_comma(&mut self) {
        while let Some(byte) = self.peek() {
            if byte == b',' {
                return;
            }
            if byte == b'"' {
                self.quoted_string();
            } else {
                self.position += 1;
            }
        }
    }
}

/// Parses every challenge of one `WWW-Authenticate` header value. Malformed pieces are skipped
/// rather than failing the whole header, as user agents do.
pub fn parse_challenges(header_value: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        bytes: header_value.as_bytes(),
        position: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_whitespace_and_commas();
        if cursor.peek().is_none() {
            return challenges;
        }
        let scheme = cursor.take_while(is_tchar);
        if scheme.is_empty() {
            // Not a token: skip this piece and try again after the next comma.
            cursor.position += 1;
            cursor.skip_to_comma();
            continue;
        }
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        // The scheme is followed by a space and then either a token68 or a parameter list, or by
        // a comma / the end (a challenge without parameters).
        let mut first_item = true;
        loop {
            cursor.skip_whitespace();
            if first_item {
                first_item = false;
            } else if cursor.peek() == Some(b',') {
                cursor.skip_whitespace_and_commas();
            } else {
                break;
            }
            let item_start = cursor.position;
            let name = cursor.take_while(is_tchar);
            if name.is_empty() {
                break;
            }
            cursor.skip_whitespace();
            if cursor.peek() != Some(b'=') {
                // A bare token: the start of the next challenge.
                cursor.position = item_start;
                break;
            }
            // `name=` could still be a token68 with padding (`abc==`): it is one when only `=`s
            // follow up to the end or a comma and it is the only item.
            let mut lookahead = cursor.position;
            while cursor.bytes.get(lookahead) == Some(&b'=') {
                lookahead += 1;
            }
            let mut rest = lookahead;
            while matches!(cursor.bytes.get(rest), Some(b' ' | b'\t')) {
                rest += 1;
            }
            let only_padding_follows = matches!(cursor.bytes.get(rest), None | Some(b','));
            if only_padding_follows
                && challenge.params.is_empty()
                && name.bytes().all(is_token68_char)
            {
                challenge.token68 = Some(
                    String::from_utf8_lossy(&cursor.bytes[item_start..lookahead]).into_owned(),
                );
                cursor.position = lookahead;
                break;
            }
            cursor.position += 1;
            cursor.skip_whitespace();
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted_string()
            } else {
                cursor.take_while(is_tchar)
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        challenges.push(challenge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(challenge: &Challenge) -> Vec<(&str, &str)> {
        challenge
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    #[test]
    fn bearer_with_quoted_values_and_several_params() {
        let challenges = parse_challenges(
            r#"Bearer resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp", scope="read write", error="invalid_token""#,
        );
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme, "Bearer");
        assert_eq!(
            pairs(&challenges[0]),
            vec![
                (
                    "resource_metadata",
                    "http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp"
                ),
                ("scope", "read write"),
                ("error", "invalid_token"),
            ]
        );
    }

    #[test]
    fn quoted_values_keep_commas_and_unescape_quotes() {
        let challenges = parse_challenges(
            r#"Bearer realm="a, b", error_description="say \"hi\", then \\ leave", scope=plain"#,
        );
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].param("realm"), Some("a, b"));
        assert_eq!(
            challenges[0].param("error_description"),
            Some(r#"say "hi", then \ leave"#)
        );
        assert_eq!(challenges[0].param("scope"), Some("plain"));
    }

    #[test]
    fn several_schemes_in_one_header() {
        let challenges = parse_challenges(
            r#"Basic realm="x", Newauth token68abc==, Bearer scope="s1", error=invalid_token"#,
        );
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, vec!["Basic", "Newauth", "Bearer"]);
        assert_eq!(challenges[1].token68.as_deref(), Some("token68abc=="));
        assert_eq!(
            pairs(&challenges[2]),
            vec![("scope", "s1"), ("error", "invalid_token")]
        );
    }

    #[test]
    fn scheme_without_params_and_names_are_case_insensitive() {
        let challenges = parse_challenges(r#"Negotiate, bearer Resource_Metadata = "u""#);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].params.is_empty());
        assert_eq!(challenges[1].param("resource_metadata"), Some("u"));
    }

    #[test]
    fn bearer_challenge_is_found_among_header_values() {
        let bearer = BearerChallenge::from_header_values([
            r#"Basic realm="x""#,
            r#"DPoP algs="ES256", Bearer scope="a b", resource_metadata="https://h/prm""#,
        ])
        .expect("bearer challenge");
        assert_eq!(
            bearer,
            BearerChallenge {
                resource_metadata: Some("https://h/prm".into()),
                scope: Some("a b".into()),
                error: None,
            }
        );
    }

    #[test]
    fn no_bearer_challenge_gives_none() {
        assert_eq!(
            BearerChallenge::from_header_values([r#"Basic realm="x""#]),
            None
        );
        assert_eq!(
            BearerChallenge::from_header_values(["Bearer"]),
            Some(BearerChallenge::default())
        );
    }

    #[test]
    fn unterminated_quote_does_not_panic() {
        let challenges = parse_challenges(r#"Bearer scope="a b"#);
        assert_eq!(challenges[0].param("scope"), Some("a b"));
    }
}
