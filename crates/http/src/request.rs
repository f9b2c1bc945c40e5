//! Reading one request with `httparse`: a request whose head has not fully arrived waits for
//! more bytes; anything httparse refuses is a bad request (400), never a guess.

/// The endpoints answer GET, and HEAD as GET without a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other method: answered 405.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query.
    pub path: String,
    /// The query's `name=value` pairs, in order (`lag=1024`); not percent-decoded, since no
    /// value we accept needs it.
    pub query: Vec<(String, String)>,
    /// The client's `Accept` header names OpenMetrics (Prometheus' own scrapes do).
    pub accepts_openmetrics: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more.
    Incomplete,
    /// Not HTTP, or HTTP we refuse: 400 with the reason.
    Bad(String),
    Complete(Request),
}

/// Headers a health checker sends are few; more is a bad request.
const MAX_HEADERS: usize = 32;

pub fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Err(e) => Parsed::Bad(e.to_string()),
        Ok(httparse::Status::Complete(_)) => {
            let method = match request.method {
                Some("GET") => Method::Get,
                Some("HEAD") => Method::Head,
                _ => Method::Other,
            };
            let target = request.path.unwrap_or_default();
            if !target.starts_with('/') {
                return Parsed::Bad(format!("request target \"{target}\" is not a path"));
            }
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let query = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (name.to_string(), value.to_string())
                })
                .collect();
            let accepts_openmetrics = request.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("accept")
                    && String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
            });
            Parsed::Complete(Request {
                method,
                path: path.to_string(),
                query,
                accepts_openmetrics,
            })
        }
    }
}

impl Request {
    /// The last value given for `name` in the query.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_request_gives_method_path_and_query() {
        let Parsed::Complete(r) = parse(b"HEAD /replica?lag=1024&x HTTP/1.1\r\nHost: a\r\n\r\n")
        else {
            panic!("not parsed");
        };
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.path, "/replica");
        assert_eq!(r.query_value("lag"), Some("1024"));
        assert_eq!(r.query_value("x"), Some(""));
        assert_eq!(r.query_value("y"), None);
        assert!(!r.accepts_openmetrics);
        let Parsed::Complete(r) = parse(
            b"GET /metrics HTTP/1.1\r\naccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
        ) else {
            panic!("not parsed");
        };
        assert!(r.accepts_openmetrics);
    }

    #[test]
    fn a_request_cut_short_waits_for_more() {
        assert_eq!(parse(b""), Parsed::Incomplete);
        assert_eq!(parse(b"GET /primary HT"), Parsed::Incomplete);
        assert_eq!(
            parse(b"GET /primary HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Incomplete
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert!(matches!(parse(b"\xff\xfe garbage\r\n\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"GET  /x HTTP/1.1\r\n\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"GET /x HTTP/9.9\r\n\r\n"), Parsed::Bad(_)));
        assert!(matches!(
            parse(b"GET http://a/x HTTP/1.1\r\n\r\n"),
            Parsed::Bad(_)
        ));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert!(matches!(parse(many.as_bytes()), Parsed::Bad(_)));
    }

    #[test]
    fn other_methods_are_parsed_to_be_refused() {
        let Parsed::Complete(r) = parse(b"POST /primary HTTP/1.0\r\n\r\n") else {
            panic!("not parsed");
        };
        assert_eq!(r.method, Method::Other);
    }
}
