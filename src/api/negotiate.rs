//! Media-type negotiation for GraphQL over HTTP: which response media type an
//! `Accept` header asks for, and whether a `Content-Type` is JSON.
//!
//! Runs on every request, so it parses headers in place without allocating.

use axum::http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;

/// The response media types this server can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// `application/graphql-response+json`: request errors get a 4xx status.
    GraphqlResponseJson,
    /// `application/json`: every well-formed request gets 200 (legacy).
    Json,
}

impl Media {
    pub(crate) fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// One media range of an `Accept` header: its specificity (2 exact, 1
/// `type/*`, 0 `*/*`) for a given media type, and its quality.
#[derive(Clone, Copy, Default)]
struct Match {
    specificity: Option<u8>,
    q: f32,
}

impl Match {
    /// RFC 9110 §12.5.1: the most specific range decides a type's quality.
    fn offer(&mut self, specificity: u8, q: f32) {
        match self.specificity {
            Some(s) if s > specificity => {}
            Some(s) if s == specificity => self.q = self.q.max(q),
            _ => {
                *self = Match {
                    specificity: Some(specificity),
                    q,
                }
            }
        }
    }
}

/// Picks the response media type from the `Accept` header(s).
///
/// No header (or an empty one) means `application/json`, for legacy clients.
/// On a tie — `*/*`, `application/*`, or both listed with equal quality —
/// `application/graphql-response+json` wins: it is the spec's preferred type
/// and its status codes tell request errors apart. A header that allows
/// neither is a 406.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Media, ApiError> {
    let mut gql = Match::default();
    let mut json = Match::default();
    let mut any_range = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            // Something that is not a media range still counts as a header
            // the client sent, so it ends in a 406 rather than a default.
            any_range |= !range.trim().is_empty();
            let Some(parsed) = MediaRange::parse(range) else {
                continue;
            };
            if !parsed.utf8 {
                continue;
            }
            let (ty, sub) = (parsed.ty, parsed.subtype);
            if ty == "*" && sub == "*" {
                gql.offer(0, parsed.q);
                json.offer(0, parsed.q);
            } else if ty.eq_ignore_ascii_case("application") {
                if sub == "*" {
                    gql.offer(1, parsed.q);
                    json.offer(1, parsed.q);
                } else if sub.eq_ignore_ascii_case("graphql-response+json") {
                    gql.offer(2, parsed.q);
                } else if sub.eq_ignore_ascii_case("json") {
                    json.offer(2, parsed.q);
                }
            }
        }
    }
    if !any_range {
        return Ok(Media::Json);
    }
    match (gql.q, json.q) {
        (g, j) if g <= 0.0 && j <= 0.0 => Err(ApiError::NotAcceptable),
        (g, j) if g >= j => Ok(Media::GraphqlResponseJson),
        _ => Ok(Media::Json),
    }
}

/// Whether the client explicitly accepts `text/html` (a browser), which on a
/// GET without a `query` parameter means "show me GraphiQL".
pub(crate) fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(MediaRange::parse)
        .any(|r| {
            r.q > 0.0 && r.ty.eq_ignore_ascii_case("text") && r.subtype.eq_ignore_ascii_case("html")
        })
}

/// Checks that a POST body is `application/json` in UTF-8 (the only request
/// media type the spec requires; anything else is a 415).
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE);
    let ok = value
        .and_then(|v| v.to_str().ok())
        .and_then(MediaRange::parse)
        .is_some_and(|r| {
            r.utf8
                && r.ty.eq_ignore_ascii_case("application")
                && r.subtype.eq_ignore_ascii_case("json")
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            content_type: value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        })
    }
}

struct MediaRange<'a> {
    ty: &'a str,
    subtype: &'a str,
    q: f32,
    /// False when a `charset` parameter names anything but UTF-8, the only
    /// encoding GraphQL over HTTP uses.
    utf8: bool,
}

impl<'a> MediaRange<'a> {
    fn parse(range: &'a str) -> Option<Self> {
        let mut parts = range.split(';');
        let essence = parts.next()?.trim();
        let (ty, subtype) = essence.split_once('/')?;
        let (ty, subtype) = (ty.trim(), subtype.trim());
        if ty.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut q = 1.0;
        let mut utf8 = true;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            if name.eq_ignore_ascii_case("q") {
                // An unparseable quality makes the range useless, not fatal.
                q = value
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0);
            } else if name.eq_ignore_ascii_case("charset") {
                utf8 = value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8");
            }
        }
        Some(Self {
            ty,
            subtype,
            q,
            utf8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> Result<Media, ApiError> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn picks_by_quality_and_specificity() {
        use Media::*;
        assert_eq!(accept(&[]).unwrap(), Json);
        assert_eq!(accept(&[""]).unwrap(), Json);
        assert_eq!(accept(&["application/json"]).unwrap(), Json);
        assert_eq!(
            accept(&["application/graphql-response+json"]).unwrap(),
            GraphqlResponseJson
        );
        assert_eq!(accept(&["*/*"]).unwrap(), GraphqlResponseJson);
        assert_eq!(accept(&["application/*"]).unwrap(), GraphqlResponseJson);
        assert_eq!(
            accept(&[
                "application/graphql-response+json; charset=utf-8, application/json; charset=utf-8"
            ])
            .unwrap(),
            GraphqlResponseJson
        );
        assert_eq!(
            accept(&["application/graphql-response+json;q=0.5, application/json"]).unwrap(),
            Json
        );
        // The specific `application/json;q=0` overrides `*/*` for JSON only.
        assert_eq!(
            accept(&["application/json;q=0, */*;q=0.1"]).unwrap(),
            GraphqlResponseJson
        );
        assert_eq!(
            accept(&["application/graphql-response+json;q=0", "*/*"]).unwrap(),
            Json
        );
        assert_eq!(
            accept(&["text/html,application/xhtml+xml,*/*;q=0.8"]).unwrap(),
            GraphqlResponseJson
        );
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for a in [
            "text/html",
            "application/xml",
            "application/json; charset=latin1",
            "application/json;q=0",
            "garbage",
        ] {
            assert!(matches!(accept(&[a]), Err(ApiError::NotAcceptable)), "{a}");
        }
    }

    #[test]
    fn content_type_must_be_utf8_json() {
        let check = |v: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = v {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            check_json_content_type(&headers).is_ok()
        };
        assert!(check(Some("application/json")));
        assert!(check(Some("Application/JSON; charset=UTF-8")));
        assert!(check(Some("application/json;charset=\"utf-8\"")));
        assert!(!check(Some("application/json; charset=utf-16")));
        assert!(!check(Some("text/plain")));
        assert!(!check(Some("application/graphql")));
        assert!(!check(None));
    }
}
