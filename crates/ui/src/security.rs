//! The token check in front of every route, and the same-origin check of the actions.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::UiState;

/// The cookie that carries the token once a browser showed it in the URL.
const COOKIE: &str = "stint_token";

/// Whether `a` equals `b`, in a time that depends only on their lengths (a token compared this
/// way leaks nothing of its content through timing).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Whether `addr` is a loopback address (only this machine can reach it).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The token a request shows, and whether it came in the query string.
fn shown_token(request: &Request) -> Option<(String, bool)> {
    let headers = request.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some((bearer.trim().to_owned(), false));
    }
    if let Some(from_query) = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(crate::format::percent_decode)
    }) {
        return Some((from_query, true));
    }
    cookie(headers, COOKIE).map(|value| (value, false))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
}

/// Refuses a request that does not show the state's token (when it has one). A right token in
/// the query string becomes a cookie and the browser is sent to the same page without it, so
/// the token does not stay in the address bar or the history.
pub(crate) async fn require_token(
    State(state): State<UiState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    match shown_token(&request) {
        Some((token, from_query)) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            if !from_query {
                return next.run(request).await;
            }
            let path = request.uri().path().to_owned();
            let rest: Vec<&str> = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|pair| !pair.starts_with("token=") && !pair.is_empty())
                .collect();
            let location = if rest.is_empty() {
                path
            } else {
                format!("{path}?{}", rest.join("&"))
            };
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
            )
                .into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "stint ui: this dashboard needs its token: open the URL `stint ui` printed \
             (?token=...), or send `Authorization: Bearer TOKEN`\n",
        )
            .into_response(),
    }
}

/// Whether a state-changing request comes from a page of this server: its `Origin` (or, without
/// one, its `Referer`) names the host it was sent to. A request with neither is refused.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let expected = format!("http://{host}");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        return origin == expected;
    }
    headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|referer| referer == expected || referer.starts_with(&format!("{expected}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn only_pages_of_this_host_pass_the_origin_check() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name.clone(), value.parse().expect("header value"));
            }
            map
        };
        let host = (header::HOST, "127.0.0.1:8080");
        for (name, value, passes) in [
            (header::ORIGIN, "http://127.0.0.1:8080", true),
            (header::ORIGIN, "http://evil.example", false),
            (header::REFERER, "http://127.0.0.1:8080/queues/q", true),
            (
                header::REFERER,
                "http://127.0.0.1:8080.evil.example/",
                false,
            ),
        ] {
            let sent = headers(&[host.clone(), (name, value)]);
            assert_eq!(same_origin(&sent), passes, "{value}");
        }
        assert!(!same_origin(&headers(&[host])));
    }
}
