//! Turns the values of recorded answers into stable placeholders, so that two runs of one scenario
//! (two emulators, or an emulator and a real Scalekit environment) give the same file when they
//! behave the same, and no file ever holds a secret or the environment's URL or host.
//!
//! One [`Normalizer`] serves one scenario's recording: ids are numbered by prefix in order of
//! first appearance within it (`m2m_1`, `m2m_2`, …), so that "the same id" and "another id" survive
//! normalization. A string goes through these passes, in order:
//!
//! 1. a JWT (a whole string of three base64url parts whose header is a JSON object naming `alg`)
//!    becomes `{"jwt": {"header": {name: type}, "claims": {name: type}, "values": {…}}}`, the
//!    values being the normalized `alg`, `typ`, `kid` prefix, `iss`, `aud` and `token_use`: what
//!    parity with Scalekit depends on (an issuer-bound token shows `iss = "{issuer}"`);
//! 2. every known secret (client secrets, tokens, PKCE verifiers, …) becomes `{secret}`, wherever
//!    it appears, and every other value the runner knows by name (`{env}`, `{code}`, `{state}`,
//!    `{mcp_url}`, …) becomes its placeholder, longest first, where it stands alone (not inside
//!    a longer word);
//! 3. ids of the fidelity reference's prefixes (`conn_`, `lri_`, …) become `<prefix><n>`;
//! 4. RFC 3339 times become `{timestamp}`, and `http(s)` origins on a loopback address nobody
//!    named become `{loopback}`;
//! 5. a whole string that still looks random (16 or more base64url characters mixing letters and
//!    digits: a JWKS modulus, a value the runner does not know) becomes `{opaque}`.
//!
//! JSON members named like a timestamp (`iat`, `exp`, `nbf`, `auth_time`, `…_at`) become
//! `{timestamp}` when they are numbers, and a string member whose name carries a secret
//! (`scalekit_wire::redact::is_secret_name`) that did not become a placeholder becomes
//! `{secret}`. Pure: no IO, no clock.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use url::Url;

/// The id prefixes of the fidelity reference's table (`scalekit.md` §7, "Id formats seen").
pub const ID_PREFIXES: &[&str] = &[
    "conn_", "lri_", "req_", "res_", "m2m_", "m2morg_", "skc_", "snk_", "tkn_", "ses_", "usr_",
    "org_", "usrcnst_", "perm_", "sec_", "err_", "env_",
];

/// What a secret becomes.
pub const SECRET: &str = "{secret}";

/// What a time becomes.
pub const TIMESTAMP: &str = "{timestamp}";

/// Known values shorter than this are not replaced by name: they would match by accident.
const SHORTEST_NAMED_VALUE: usize = 4;

/// Whole strings at least this long that mix letters and digits become `{opaque}`.
const SHORTEST_OPAQUE: usize = 16;

/// Turns one scenario's answers into stable placeholders (see the module documentation).
#[derive(Debug, Default)]
pub struct Normalizer {
    /// Known values by value: the placeholder each becomes, and whether it must stand alone.
    known: BTreeMap<String, Known>,
    /// `known`, longest value first (ties by value), rebuilt after each [`Normalizer::learn`].
    candidates: Vec<(String, Known)>,
    /// Every id seen so far, by prefix, in order of first appearance.
    ids: BTreeMap<&'static str, Vec<String>>,
    /// The environment's host name, lower case, when it is not a loopback address: replaced
    /// wherever it is left (inside a longer word, percent-encoded after `%2F`, in another case).
    env_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    placeholder: String,
    /// A secret is replaced wherever it appears; a named value only where it stands alone.
    secret: bool,
}

/// Whether a runner variable holds a secret, whatever prefix `save_as` gave it (`other.…`):
/// client secrets and tokens (`…_secret`, `…_token`), the PKCE verifier, identity assertions,
/// passwords. Codes, states and consent ids keep their names: `{code}` says more than
/// `{secret}`, and neither shows the value.
pub fn is_secret_variable(name: &str) -> bool {
    let base = name.rsplit('.').next().unwrap_or(name);
    base.ends_with("_secret")
        || base.ends_with("_token")
        || base.ends_with("password")
        || matches!(base, "code_verifier" | "id_jag" | "assertion" | "token")
}

impl Normalizer {
    /// A normalizer that knows no value yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns the runner's variables (`name → value`): secrets become `{secret}`, ids are left
    /// to the id pass, every other value becomes `{name}`. A value known under two names keeps
    /// an unprefixed name over a `save_as` copy, then the name that sorts first (`{env}` rather
    /// than `{env_origin}`, `{mcp_url}` rather than `{server_url}`). `env`, when given, also
    /// names the environment's host (`{env_host}`).
    pub fn learn<'a>(&mut self, variables: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, value) in variables {
            if value.is_empty() {
                continue;
            }
            if is_secret_variable(name) {
                self.known.insert(
                    value.to_owned(),
                    Known {
                        placeholder: SECRET.to_owned(),
                        secret: true,
                    },
                );
                continue;
            }
            if whole_id(value).is_some() || value.chars().count() < SHORTEST_NAMED_VALUE {
                continue;
            }
            self.name_value(value, &format!("{{{name}}}"));
            if name == "env"
                && let Ok(url) = Url::parse(value)
                && let Some(host) = url.host_str()
            {
                let with_port = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                self.name_value(&with_port, "{env_host}");
                // A URL inside a query or form value is percent-encoded (`iss=https%3A%2F%2F…`).
                let encoded: String =
                    url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
                self.name_value(&encoded, "{env}");
                // A real environment's bare host name is as telling as its URL; a loopback
                // address is not the environment's and stays for the loopback pass.
                if !is_loopback_host(host) {
                    self.name_value(host, "{env_host}");
                    self.env_host = Some(host.to_ascii_lowercase());
                }
            }
        }
        let mut candidates: Vec<(String, Known)> = self
            .known
            .iter()
            .map(|(value, known)| (value.clone(), known.clone()))
            .collect();
        candidates.sort_by(|left, right| {
            right
                .0
                .len()
                .cmp(&left.0.len())
                .then_with(|| left.0.cmp(&right.0))
        });
        self.candidates = candidates;
    }

    fn name_value(&mut self, value: &str, placeholder: &str) {
        match self.known.get_mut(value) {
            // A secret stays a secret whatever else names it.
            Some(known) if known.secret => {}
            Some(known) => {
                // A variable's own name before a copy `save_as` made (`{state}`, not
                // `{first.state}`), then the name that sorts first.
                let rank = |placeholder: &str| {
                    let name = placeholder.trim_matches(['{', '}']).to_owned();
                    (name.contains('.'), name)
                };
                if rank(placeholder) < rank(&known.placeholder) {
                    known.placeholder = placeholder.to_owned();
                }
            }
            None => {
                self.known.insert(
                    value.to_owned(),
                    Known {
                        placeholder: placeholder.to_owned(),
                        secret: false,
                    },
                );
            }
        }
    }

    /// A string value: a JWT becomes its decoded shape, anything else [`Normalizer::text`].
    pub fn value(&mut self, text: &str) -> Value {
        match self.jwt(text) {
            Some(jwt) => jwt,
            None => Value::String(self.text(text)),
        }
    }

    /// A string through passes 2 to 5 (no JWT decoding).
    pub fn text(&mut self, text: &str) -> String {
        let known = self.replace_known(text);
        let ids = self.replace_ids(&known);
        let times = replace_timestamps(&ids);
        let hosts = self.replace_origins(&times);
        if looks_opaque(&hosts) {
            OPAQUE.to_owned()
        } else {
            hosts
        }
    }

    /// Pass 4b: the `http(s)://` origins no variable named. One on a loopback address with a
    /// port becomes `{loopback}` (a port of this run, meaningless in another); one on any other
    /// host (a real environment's other hosts, a custom domain, a third party an answer names)
    /// becomes `{host}`; and the environment's own host name wherever it is left becomes
    /// `{env_host}`: a recording never holds a host name.
    fn replace_origins(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut index = 0;
        'scan: while index < text.len() {
            let rest = &text[index..];
            for scheme in ["https://", "http://"] {
                if !rest
                    .get(..scheme.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
                {
                    continue;
                }
                let after = &rest[scheme.len()..];
                // `[::1]`, or a name or address.
                let host = match after.strip_prefix('[') {
                    Some(inside) => inside.find(']').map_or(0, |close| close + 2),
                    None => after
                        .bytes()
                        .take_while(|byte| {
                            byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
                        })
                        .count(),
                };
                if host == 0 {
                    continue;
                }
                let port = after[host..].strip_prefix(':').map_or(0, |digits| {
                    let count = digits.bytes().take_while(u8::is_ascii_digit).count();
                    if count > 0 { count + 1 } else { 0 }
                });
                if !is_loopback_host(&after[..host].to_ascii_lowercase()) {
                    out.push_str("{host}");
                } else if port > 0 {
                    out.push_str("{loopback}");
                } else {
                    // A loopback origin without a port says nothing of this run: kept.
                    continue;
                }
                index += scheme.len() + host + port;
                continue 'scan;
            }
            if let Some(env_host) = &self.env_host
                && rest
                    .get(..env_host.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(env_host))
            {
                out.push_str("{env_host}");
                index += env_host.len();
                continue 'scan;
            }
            let character = rest.chars().next().expect("inside the text");
            out.push(character);
            index += character.len_utf8();
        }
        out
    }

    /// A JSON value, member by member (member names get passes 2 and 3 only).
    pub fn json(&mut self, value: &Value) -> Value {
        self.member(None, value)
    }

    fn member(&mut self, name: Option<&str>, value: &Value) -> Value {
        match value {
            Value::String(text) => {
                let normalized = self.value(text);
                let secret_member = name.is_some_and(scalekit_wire::redact::is_secret_name);
                if name.is_some_and(is_random_by_name) {
                    return Value::String(OPAQUE.to_owned());
                }
                match normalized {
                    Value::String(text) if secret_member && !is_placeholder(&text) => {
                        Value::String(SECRET.to_owned())
                    }
                    other => other,
                }
            }
            Value::Number(_) if name.is_some_and(is_timestamp_name) => {
                Value::String(TIMESTAMP.to_owned())
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.member(name, item)).collect())
            }
            Value::Object(members) => {
                let mut normalized = Map::new();
                for (key, member) in members {
                    let key_text = self.key(key);
                    let member = self.member(Some(key), member);
                    normalized.insert(key_text, member);
                }
                Value::Object(normalized)
            }
            other => other.clone(),
        }
    }

    /// A member or parameter name: secrets and ids only (a name is never a time or random).
    pub fn key(&mut self, name: &str) -> String {
        let known = self.replace_known(name);
        self.replace_ids(&known)
    }

    /// A URL split into its normalized origin and path (`url`) and its query parameters
    /// (`query`: name → normalized value, a JWT decoded; a secret-named parameter that did not
    /// become a placeholder is `{secret}`); the names of a fragment's parameters, if any.
    pub fn url(&mut self, url: &Url) -> Value {
        let mut base = url.clone();
        base.set_query(None);
        base.set_fragment(None);
        let mut query = Map::new();
        for (name, value) in url.query_pairs() {
            let key = self.key(&name);
            let value = match self.value(&value) {
                _ if is_random_by_name(&name) => Value::String(OPAQUE.to_owned()),
                Value::String(text)
                    if scalekit_wire::redact::is_secret_name(&name) && !is_placeholder(&text) =>
                {
                    Value::String(SECRET.to_owned())
                }
                other => other,
            };
            match query.get_mut(&key) {
                // A repeated parameter keeps every value, in order.
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    query.insert(key, value);
                }
            }
        }
        let mut shape = json!({ "url": self.text(base.as_str()), "query": query });
        if let Some(fragment) = url.fragment() {
            let names: Vec<Value> = url::form_urlencoded::parse(fragment.as_bytes())
                .map(|(name, _)| Value::String(self.key(&name)))
                .collect();
            shape["fragment"] = Value::Array(names);
        }
        shape
    }

    /// An answer's body: JSON normalized, an HTML page reduced to what identifies it (the hosted
    /// error page's `error`, the consent page), anything else its length class; `null` when empty.
    pub fn body(&mut self, content_type: Option<&str>, bytes: &[u8]) -> Value {
        if bytes.is_empty() {
            return Value::Null;
        }
        if let Ok(parsed) = serde_json::from_slice::<Value>(bytes) {
            return self.json(&parsed);
        }
        let text = String::from_utf8_lossy(bytes);
        let html = content_type.is_some_and(|content_type| content_type.contains("html"))
            || text
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html")
            || text.trim_start().to_ascii_lowercase().starts_with("<html");
        if !html {
            return json!({ "text": length_class(bytes.len()) });
        }
        // The emulator's hosted error page names its error in `<code id="error">`; its consent
        // page carries the `consent_id` form field. A real environment's pages are unknown, so
        // they are kept by size only.
        if let Some(error) = between(&text, "<code id=\"error\">", "</code>") {
            let error = self.text(&unescape_html(error));
            return json!({ "html": "error-page", "error": error });
        }
        if text.contains("name=\"consent_id\"") {
            return json!({ "html": "consent-page" });
        }
        json!({ "html": "page", "length": length_class(bytes.len()) })
    }

    /// The last pass over a finished value: any known secret left anywhere, in a string or a
    /// member name, becomes `{secret}`.
    pub fn scrub(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Some(scrubbed) = self.scrub_text(text) {
                    *text = scrubbed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub(item)),
            Value::Object(members) => {
                let taken = std::mem::take(members);
                for (key, mut member) in taken {
                    self.scrub(&mut member);
                    let key = self.scrub_text(&key).unwrap_or(key);
                    members.insert(key, member);
                }
            }
            _ => {}
        }
    }

    fn scrub_text(&self, text: &str) -> Option<String> {
        let mut scrubbed = text.to_owned();
        let mut changed = false;
        for (value, known) in &self.candidates {
            if known.secret && scrubbed.contains(value.as_str()) {
                scrubbed = scrubbed.replace(value.as_str(), SECRET);
                changed = true;
            }
        }
        changed.then_some(scrubbed)
    }

    /// Pass 2: secrets first, wherever they are, so that no named value that overlaps one can
    /// leave a piece of it; then the named values where they stand alone.
    fn replace_known(&self, text: &str) -> String {
        let without_secrets = self.replace_candidates(text, true);
        self.replace_candidates(&without_secrets, false)
    }

    /// One scan for the secrets (`secrets`) or the named values, longest first, left to right,
    /// so that a placeholder is never scanned again.
    fn replace_candidates(&self, text: &str, secrets: bool) -> String {
        let mut out = String::with_capacity(text.len());
        let mut index = 0;
        'scan: while index < text.len() {
            let rest = &text[index..];
            for (value, known) in &self.candidates {
                if known.secret != secrets {
                    continue;
                }
                if rest.starts_with(value.as_str())
                    && (known.secret || stands_alone(text, index, index + value.len()))
                {
                    out.push_str(&known.placeholder);
                    index += value.len();
                    continue 'scan;
                }
            }
            let character = rest.chars().next().expect("index is inside the text");
            out.push(character);
            index += character.len_utf8();
        }
        out
    }

    /// Pass 3: ids by prefix, numbered by first appearance; placeholders (`{…}`) are skipped.
    fn replace_ids(&mut self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut index = 0;
        while index < text.len() {
            if let Some(length) = placeholder_at(&text[index..]) {
                out.push_str(&text[index..index + length]);
                index += length;
                continue;
            }
            let after_word = index > 0 && is_word_byte(bytes[index - 1]);
            if !after_word && let Some((prefix, length)) = id_at(&text[index..]) {
                let id = &text[index..index + length];
                let seen = self.ids.entry(prefix).or_default();
                let number = match seen.iter().position(|known| known == id) {
                    Some(position) => position + 1,
                    None => {
                        seen.push(id.to_owned());
                        seen.len()
                    }
                };
                out.push_str(&format!("{prefix}{number}"));
                index += length;
                continue;
            }
            let character = text[index..].chars().next().expect("inside the text");
            out.push(character);
            index += character.len_utf8();
        }
        out
    }

    /// Each member's JSON type, by normalized member name.
    fn types_of(&mut self, members: &Map<String, Value>) -> Map<String, Value> {
        members
            .iter()
            .map(|(name, value)| (self.key(name), Value::String(json_type(value).to_owned())))
            .collect()
    }

    /// Pass 1: a JWT's header and claims by type, and the values parity depends on.
    fn jwt(&mut self, text: &str) -> Option<Value> {
        let mut parts = text.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || header.is_empty() || claims.is_empty() {
            return None;
        }
        let is_base64url = |part: &str| {
            part.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'='))
        };
        if !(is_base64url(header) && is_base64url(claims) && is_base64url(signature)) {
            return None;
        }
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        };
        let header = decode(header)?;
        let header_members = header.as_object()?;
        if !header_members.contains_key("alg") {
            return None;
        }
        let claims = decode(claims);
        let mut values = Map::new();
        for name in ["alg", "typ"] {
            if let Some(value) = header_members.get(name) {
                values.insert(name.to_owned(), self.member(Some(name), value));
            }
        }
        if let Some(kid) = header_members.get("kid").and_then(Value::as_str) {
            let prefix = ID_PREFIXES
                .iter()
                .find(|prefix| kid.starts_with(**prefix))
                .map(|prefix| (*prefix).to_owned());
            let kid = prefix.unwrap_or_else(|| self.text(kid));
            values.insert("kid".to_owned(), Value::String(kid));
        }
        let claim_members = claims.as_ref().and_then(Value::as_object);
        for name in ["iss", "aud", "token_use"] {
            if let Some(value) = claim_members.and_then(|members| members.get(name)) {
                values.insert(name.to_owned(), self.member(Some(name), value));
            }
        }
        let claim_types = match claim_members {
            Some(members) => Value::Object(self.types_of(members)),
            None => Value::String("unreadable".to_owned()),
        };
        Some(json!({
            "jwt": {
                "header": Value::Object(self.types_of(header_members)),
                "claims": claim_types,
                "values": Value::Object(values),
            }
        }))
    }
}

/// The name of a JSON value's type.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a normalized string is exactly one placeholder (`{code}`, `{secret}`).
pub fn is_placeholder(text: &str) -> bool {
    text.len() > 2
        && text.starts_with('{')
        && text.ends_with('}')
        && !text[1..text.len() - 1].contains(['{', '}'])
}

/// Whether a normalized string holds a placeholder or a numbered id anywhere: such strings are
/// compared by value, since their value is what normalization kept on purpose.
pub fn holds_placeholder(text: &str) -> bool {
    if text.contains('{') && text.contains('}') {
        return true;
    }
    let bytes = text.as_bytes();
    (0..text.len()).any(|index| {
        (index == 0 || !is_word_byte(bytes[index - 1]))
            && text.is_char_boundary(index)
            && id_at(&text[index..]).is_some()
    })
}

/// The length of the placeholder (`{name}`, `{other.state}`) at the start of `text`, if one is.
fn placeholder_at(text: &str) -> Option<usize> {
    let inner = text.strip_prefix('{')?;
    let length = inner
        .bytes()
        .take_while(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'.')
        })
        .count();
    (length > 0 && inner.as_bytes().get(length) == Some(&b'}')).then_some(length + 2)
}

/// A member name whose number is a time: `iat`, `exp`, `nbf`, `auth_time`, `now` (the control
/// API's clock) and `…_at`.
fn is_timestamp_name(name: &str) -> bool {
    matches!(name, "iat" | "exp" | "nbf" | "auth_time" | "now") || name.ends_with("_at")
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Whether `text[start..end]` is not part of a longer word: an edge that is a letter or digit
/// must not touch another.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let alphanumeric = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_alphanumeric);
    let before_ok = start == 0 || !alphanumeric(start) || !alphanumeric(start - 1);
    let after_ok = end == 0 || !alphanumeric(end - 1) || !alphanumeric(end);
    before_ok && after_ok
}

/// The id at the start of `text`, if one is there: a known prefix and letters or digits, at
/// least one a digit (the prefix's length is not counted twice: `m2morg_` is tried before
/// `m2m_` cannot match it anyway, since `m2m_` needs the underscore fourth).
fn id_at(text: &str) -> Option<(&'static str, usize)> {
    ID_PREFIXES.iter().find_map(|prefix| {
        let rest = text.strip_prefix(prefix)?;
        let body = &rest[..rest.bytes().take_while(u8::is_ascii_alphanumeric).count()];
        // A digit: Scalekit's ids are digits (snowflake-like), and words such as `org_id` or
        // `env_name` are not ids.
        body.bytes()
            .any(|byte| byte.is_ascii_digit())
            .then_some((*prefix, prefix.len() + body.len()))
    })
}

/// The prefix of `text` if the whole of it is one id.
fn whole_id(text: &str) -> Option<&'static str> {
    id_at(text).and_then(|(prefix, length)| (length == text.len()).then_some(prefix))
}

/// Pass 4a: RFC 3339 date-times (`2026-12-07T06:10:45Z`, `…45.123+01:00`) become `{timestamp}`.
fn replace_timestamps(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let after_digit = index > 0 && bytes[index - 1].is_ascii_digit();
        if !after_digit && let Some(length) = rfc3339_length(&bytes[index..]) {
            out.push_str(TIMESTAMP);
            index += length;
            continue;
        }
        let character = text[index..].chars().next().expect("inside the text");
        out.push(character);
        index += character.len_utf8();
    }
    out
}

fn rfc3339_length(bytes: &[u8]) -> Option<usize> {
    let digit = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_digit);
    let is = |index: usize, expected: u8| bytes.get(index) == Some(&expected);
    let digits = |indices: &[usize]| indices.iter().all(|index| digit(*index));
    let date = digits(&[0, 1, 2, 3]) && is(4, b'-') && digits(&[5, 6]) && is(7, b'-');
    let time = digits(&[8, 9])
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && digits(&[11, 12])
        && is(13, b':')
        && digits(&[14, 15])
        && is(16, b':')
        && digits(&[17, 18]);
    if !(date && time) {
        return None;
    }
    let mut end = 19;
    if is(end, b'.') && digit(end + 1) {
        end += 1;
        while digit(end) {
            end += 1;
        }
    }
    match bytes.get(end) {
        Some(b'Z' | b'z') => Some(end + 1),
        Some(b'+' | b'-')
            if digits(&[end + 1, end + 2]) && is(end + 3, b':') && digits(&[end + 4, end + 5]) =>
        {
            Some(end + 6)
        }
        _ => None,
    }
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// What a value random by nature becomes (pass 5, and members or parameters such as
/// `code_challenge` whose name says so).
pub const OPAQUE: &str = "{opaque}";

/// Whether a member or parameter named `name` holds a value random by nature, whatever it
/// looks like: a PKCE challenge is base64url of a hash, which may hold no digit at all.
fn is_random_by_name(name: &str) -> bool {
    matches!(name, "code_challenge")
}

/// Pass 5: a whole string of base64url characters, 16 or more, with letters and digits.
fn looks_opaque(text: &str) -> bool {
    text.len() >= SHORTEST_OPAQUE
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'='))
        && text.bytes().any(|byte| byte.is_ascii_digit())
        && text.bytes().any(|byte| byte.is_ascii_alphabetic())
}

/// A body's size without its content: `small` (under 1 KiB), `medium` (under 16 KiB), `large`.
fn length_class(length: usize) -> &'static str {
    match length {
        0..1024 => "small",
        1024..16384 => "medium",
        _ => "large",
    }
}

/// The text between the first `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let length = text[from..].find(end)?;
    Some(&text[from..from + length])
}

/// The five entities `testbed_web::html::escape` writes, back to their characters.
fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}
