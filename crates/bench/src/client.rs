//! A minimal HTTP/1.1 keep-alive client on hyper: one connection per worker, one request at a
//! time, no redirects, no pool, no cookie jar. The load generator must cost far less than the
//! server it measures, so it does only what the flow needs: the one cookie a flow needs (the
//! sign-in's, Decisions §9) is read from the answer that sets it and sent back by hand.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// One answer: status, `Location` if any, and the whole body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The `Location` header, when present and ASCII.
    pub location: Option<String>,
    /// The `name=value` of the first cookie the answer sets, when it sets one.
    pub cookie: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// Fails unless the status is `expected`, quoting the start of the body.
    pub fn expect(self, step: &'static str, expected: StatusCode) -> Result<Answer, BenchError> {
        if self.status == expected {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body);
        Err(BenchError::Unexpected {
            step,
            expected: expected.as_u16(),
            status: self.status.as_u16(),
            body: body.chars().take(300).collect(),
        })
    }
}

/// A keep-alive HTTP/1.1 connection to one server.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    /// Connects to `address` (Nagle off: every request is one small write).
    pub async fn open(address: SocketAddr) -> Result<Connection, BenchError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| BenchError::Connect { address, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| BenchError::Connect { address, source })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(BenchError::Http)?;
        // The connection task ends when the sender is dropped or the server closes.
        tokio::spawn(connection);
        let host = HeaderValue::from_str(&address.to_string())
            .map_err(|error| BenchError::Request(error.into()))?;
        Ok(Connection { sender, host })
    }

    /// `GET path_and_query`.
    pub async fn get(&mut self, path_and_query: &str) -> Result<Answer, BenchError> {
        self.get_with_cookie(path_and_query, None).await
    }

    /// `GET path_and_query` with a `Cookie` header (`name=value`), as a browser sends it back.
    pub async fn get_with_cookie(
        &mut self,
        path_and_query: &str,
        cookie: Option<&str>,
    ) -> Result<Answer, BenchError> {
        self.send(
            Method::GET,
            path_and_query,
            Headers {
                cookie,
                ..Headers::default()
            },
            Bytes::new(),
        )
        .await
    }

    /// `POST path` with a form body.
    pub async fn post_form(&mut self, path: &str, form: String) -> Result<Answer, BenchError> {
        self.send(
            Method::POST,
            path,
            Headers {
                content_type: Some("application/x-www-form-urlencoded"),
                ..Headers::default()
            },
            Bytes::from(form),
        )
        .await
    }

    /// `POST path` with a JSON body and an optional bearer token.
    pub async fn post_json(
        &mut self,
        path: &str,
        bearer: Option<&HeaderValue>,
        json: Bytes,
    ) -> Result<Answer, BenchError> {
        self.send(
            Method::POST,
            path,
            Headers {
                content_type: Some("application/json"),
                authorization: bearer,
                cookie: None,
            },
            json,
        )
        .await
    }

    async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: Headers<'_>,
        body: Bytes,
    ) -> Result<Answer, BenchError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.host.clone());
        if let Some(content_type) = headers.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = headers.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(cookie) = headers.cookie {
            request = request.header(COOKIE, cookie);
        }
        let request = request.body(Full::new(body))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let cookie = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            location,
            cookie,
            body,
        })
    }
}

/// The request headers `send` may add besides `Host`.
#[derive(Debug, Default)]
struct Headers<'a> {
    content_type: Option<&'static str>,
    authorization: Option<&'a HeaderValue>,
    cookie: Option<&'a str>,
}
