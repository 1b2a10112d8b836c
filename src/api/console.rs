//! The console's web assets: `console/dist/`, built ahead by
//! `console/build.mjs` and embedded in the binary, so a machine without
//! Node serves the console at `/console`. The page talks to `/graphql` on
//! the same origin with the API key the user signs in with.

use std::sync::OnceLock;

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

pub const CONSOLE_PATH: &str = "/console";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/dist/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/dist/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/dist/console.css"),
    },
];

/// An asset compressed once, on first request: the bundle is ~1 MB and
/// every browser takes gzip, so it is not compressed per request.
struct Served {
    gzip: Vec<u8>,
    etag: HeaderValue,
}

fn served(index: usize) -> &'static Served {
    static SERVED: [OnceLock<Served>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    SERVED[index].get_or_init(|| {
        use std::io::Write;
        let bytes = ASSETS[index].bytes;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let gzip = enc
            .write_all(bytes)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        let hash = hex::encode(&Sha256::digest(bytes)[..12]);
        let etag = HeaderValue::from_str(&format!("\"{hash}\""))
            .unwrap_or(HeaderValue::from_static("\"console\""));
        Served { gzip, etag }
    })
}

/// Scripts only from this origin; styles may be inline because the graph
/// canvas and the code editor set them at run time.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

/// A route per embedded file (and `/console`, `/console/` for the page);
/// any other path under `/console/` reaches the router's fallback and its
/// `ROUTE_NOT_FOUND`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = || get(|headers: HeaderMap| async move { asset(0, &headers) });
    let mut router = Router::new()
        .route(CONSOLE_PATH, page())
        .route("/console/", page());
    for (index, a) in ASSETS.iter().enumerate() {
        router = router.route(
            &format!("{CONSOLE_PATH}/{}", a.name),
            get(move |headers: HeaderMap| async move { asset(index, &headers) }),
        );
    }
    router
}

fn asset(index: usize, headers: &HeaderMap) -> Response {
    let a = &ASSETS[index];
    let s = served(index);
    let mut res = if headers.get(header::IF_NONE_MATCH) == Some(&s.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) && !s.gzip.is_empty() {
        let mut r = s.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        a.bytes.into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::ETAG, s.etag.clone());
    // Revalidate every load: the files keep their names across releases.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let s = served(1);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&s.gzip[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, ASSETS[1].bytes);
    }
}
