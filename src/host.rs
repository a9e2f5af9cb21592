//! The Functions host ⇄ custom handler wire protocol: typed models of the invocation request
//! (`{"Data":…,"Metadata":…}`) and reply (`{"Outputs":…,"Logs":…,"ReturnValue":…}`), and the
//! adapters between them and the app's one [`FunctionRequest`]/[`FunctionResponse`] model.

use crate::http::{ApiError, TimerInfo};
use crate::http::{FunctionRequest, FunctionResponse};
use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_with::serde_as;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The body of `POST /{FunctionName}`. Bindings stay raw JSON until the one that is needed is
/// decoded, so the parts this app ignores (`Metadata`, `Identities`) cost no allocations.
#[derive(Debug, Deserialize)]
pub struct InvocationRequest<'a> {
    /// One entry per input binding, keyed by the binding's name; values borrowed from the body.
    #[serde(rename = "Data", borrow)]
    pub data: HashMap<String, &'a RawValue>,
    /// Trigger metadata; not used (everything needed is in `Data`).
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<IgnoredAny>,
}

/// The envelope of an HTTP function's invocation as the host sends it, decoded in one pass:
/// `Data` holds one binding, the HTTP trigger, whatever its name. Anything else (several
/// bindings, a malformed one) is left to [`InvocationRequest`], which says what is wrong.
#[derive(Deserialize)]
struct HttpInvocation<'a> {
    #[serde(rename = "Data", borrow)]
    data: SoleBinding<HttpTriggerRequest<'a>>,
    #[serde(rename = "Metadata", default)]
    _metadata: Option<IgnoredAny>,
}

/// A JSON object with exactly one entry, whose value is a `T` (the key is not kept).
struct SoleBinding<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SoleBinding<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SoleVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SoleVisitor<T> {
            type Value = SoleBinding<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with one binding")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                if map.next_key::<IgnoredAny>()?.is_none() {
                    return Err(A::Error::custom("no binding"));
                }
                let value = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("more than one binding"));
                }
                Ok(SoleBinding(value))
            }
        }
        deserializer.deserialize_map(SoleVisitor(std::marker::PhantomData))
    }
}

/// The HTTP trigger's request of an invocation body (`POST /{Function}` of an HTTP function):
/// the same answer, and the same errors, as [`InvocationRequest::parse`] followed by
/// [`InvocationRequest::http_request`]. The host's usual envelope, one binding, is decoded in a
/// single pass with nothing but the request's own parts allocated.
pub fn http_request(body: &[u8]) -> Result<FunctionRequest, ApiError> {
    // The whole body is checked for UTF-8 once, a word at a time, rather than string by string.
    let one_pass = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<HttpInvocation>(text).ok());
    match one_pass {
        Some(invocation) => invocation.data.0.into_function_request(),
        None => InvocationRequest::parse(body)?.http_request(),
    }
}

/// Which keys a binding's value has, to tell an HTTP trigger from a timer whatever its name.
#[derive(Deserialize)]
struct BindingKeys {
    #[serde(rename = "Url")]
    url: Option<IgnoredAny>,
    #[serde(rename = "Method")]
    method: Option<IgnoredAny>,
    #[serde(rename = "IsPastDue")]
    is_past_due: Option<IgnoredAny>,
    #[serde(rename = "ScheduleStatus")]
    schedule_status: Option<IgnoredAny>,
}

impl BindingKeys {
    fn of(raw: &RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }
}

/// `Data.req` of an HTTP trigger in the invocation form. Strings are borrowed from the body
/// where JSON allows (no escapes), headers go straight into a `HeaderMap`, and the query and
/// route parameters into lists of pairs in the order sent.
#[serde_as]
#[derive(Debug, Deserialize)]
pub struct HttpTriggerRequest<'a> {
    /// The public URL, query included.
    #[serde(rename = "Url", borrow)]
    pub url: Text<'a>,
    /// Upper-case verb.
    #[serde(rename = "Method", borrow)]
    pub method: Text<'a>,
    /// The host's decoded query as raw JSON: an object, each name once (ignoring case), the
    /// values of a repeated one joined with commas. Decoded only when `Url` has no query (see
    /// [`query_of`]): the widget's requests have one, and decoding the object for nothing would
    /// cost them. So it is checked only then: a malformed one beside a URL query is ignored
    /// (the URL says what the client sent), and `null` is no query.
    #[serde(rename = "Query", default, borrow)]
    pub query: Option<&'a RawValue>,
    /// Headers, each with its values as an array; only those in
    /// [`FunctionRequest::HEADERS_READ`] are kept.
    #[serde(rename = "Headers", default, deserialize_with = "headers_from_arrays")]
    pub headers: HeaderMap,
    /// Route parameters (a missing optional one is null).
    #[serde(rename = "Params", default)]
    #[serde_as(as = "serde_with::Map<_, _>")]
    pub params: Vec<(String, Option<String>)>,
    /// Claims identities; opaque and unused here.
    #[serde(rename = "Identities", default)]
    pub identities: Option<IgnoredAny>,
    /// Present only when the client sent a body with Content-Length.
    #[serde(rename = "Body", default, borrow)]
    pub body: Option<Text<'a>>,
}

/// A JSON string, borrowed from the input unless it had escapes.
#[derive(Debug)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// `{"Accept": ["*/*"], …}` straight into a `HeaderMap`, keeping the headers the functions read
/// ([`FunctionRequest::HEADERS_READ`]) and skipping the rest unread: the host passes on every
/// header the client sent, and building them all was a third of decoding an envelope. Values
/// HTTP cannot carry are dropped (the host passes on whatever the client sent).
fn headers_from_arrays<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<HeaderMap, D::Error> {
    struct Values<'a>(&'a mut HeaderMap, Option<HeaderName>);
    impl<'de> DeserializeSeed<'de> for Values<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Values<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of header values")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(value) = seq.next_element::<Text<'de>>()? {
                if let Some(name) = &self.1 {
                    if let Ok(value) = HeaderValue::from_str(&value.0) {
                        self.0.append(name.clone(), value);
                    }
                }
            }
            Ok(())
        }
    }
    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = HeaderMap;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of header arrays")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
            // Most requests keep none or one (Origin): nothing allocated until one is kept.
            let mut headers = HeaderMap::new();
            while let Some(name) = map.next_key::<Text<'de>>()? {
                let read = FunctionRequest::HEADERS_READ
                    .iter()
                    .find(|read| name.0.eq_ignore_ascii_case(read.as_str()));
                // Values of the others are still read as arrays of strings, not kept.
                map.next_value_seed(Values(&mut headers, read.cloned()))?;
            }
            Ok(headers)
        }
    }
    deserializer.deserialize_map(Headers)
}

/// The reply to a timer invocation (no outputs).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    /// One entry per output binding; none for timers.
    #[serde(rename = "Outputs")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Lines for the function's log.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// Always null: no function here has a `$return` binding.
    #[serde(rename = "ReturnValue")]
    pub return_value: serde_json::Value,
}

/// The reply to an HTTP invocation, serialized straight from borrowed parts.
#[derive(Debug, Serialize)]
pub struct HttpInvocationResponse<'a> {
    /// `{"res": …}`.
    #[serde(rename = "Outputs")]
    pub outputs: HttpOutputs<'a>,
    /// Lines for the function's log.
    #[serde(rename = "Logs")]
    pub logs: &'a [String],
    /// Always null.
    #[serde(rename = "ReturnValue")]
    pub return_value: (),
}

/// The output bindings of an HTTP function.
#[derive(Debug, Serialize)]
pub struct HttpOutputs<'a> {
    /// The `http` output binding, named `res` in every function.json of the app.
    pub res: HttpOutput<'a>,
}

/// `Outputs.res`: the HTTP response the host gives the client.
#[derive(Debug, Serialize)]
pub struct HttpOutput<'a> {
    /// Status code (a number).
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The body as a JSON string (a JSON object here would be re-rendered indented by the
    /// host), already escaped: see [`body_literal`] and [`HttpReplies`].
    pub body: &'a RawValue,
    /// String-valued headers, with their usual spelling.
    pub headers: SpelledHeaders<'a>,
}

/// A `HeaderMap` serialized as the host wants it: name → string, names spelled as people write
/// them (`Content-Type`, `ETag`; the host compares them case-insensitively).
#[derive(Debug)]
pub struct SpelledHeaders<'a>(pub &'a HeaderMap);

impl Serialize for SpelledHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.keys_len()))?;
        for name in self.0.keys() {
            // A repeated header is joined with ", " as HTTP allows; this app sends each once.
            let mut values = self.0.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let Some(first) = values.next() else { continue };
            let rest: Vec<&str> = values.collect();
            let spelled = header_spelling(name.as_str());
            if rest.is_empty() {
                map.serialize_entry(&spelled, first)?;
            } else {
                map.serialize_entry(
                    &spelled,
                    &[first]
                        .into_iter()
                        .chain(rest)
                        .collect::<Vec<_>>()
                        .join(", "),
                )?;
            }
        }
        map.end()
    }
}

impl<'a> InvocationRequest<'a> {
    /// Parses an invocation body; every shape problem is a 400 with a sentence saying what.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "The invocation body is empty; expected {\"Data\":…,\"Metadata\":…}.".into(),
            ));
        }
        serde_json::from_slice(body).map_err(|err| {
            ApiError::BadRequest(format!(
                "The invocation body is not a valid invocation request: {err}."
            ))
        })
    }

    /// The HTTP trigger's request: the `Data` entry that has `Url` and `Method`.
    pub fn http_request(&self) -> Result<FunctionRequest, ApiError> {
        // The usual case, one binding that decodes at once, costs a single pass.
        for value in self.data.values() {
            if let Ok(trigger) = serde_json::from_str::<HttpTriggerRequest>(value.get()) {
                return trigger.into_function_request();
            }
        }
        let value = self
            .data
            .values()
            .find(|v| BindingKeys::of(v).is_some_and(|k| k.url.is_some() && k.method.is_some()))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no HTTP trigger data (Data.req with Url and Method)."
                        .into(),
                )
            })?;
        let trigger: HttpTriggerRequest = serde_json::from_str(value.get()).map_err(|err| {
            ApiError::BadRequest(format!("The HTTP trigger data is malformed: {err}."))
        })?;
        trigger.into_function_request()
    }

    /// The timer trigger's data: the `Data` entry shaped like `TimerInfo`.
    pub fn timer(&self) -> Result<TimerInfo, ApiError> {
        let value = self
            .data
            .values()
            .find(|v| {
                BindingKeys::of(v)
                    .is_some_and(|k| k.is_past_due.is_some() || k.schedule_status.is_some())
            })
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no timer data (IsPastDue, ScheduleStatus).".into(),
                )
            })?;
        serde_json::from_str(value.get())
            .map_err(|err| ApiError::BadRequest(format!("The timer data is malformed: {err}.")))
    }
}

impl HttpTriggerRequest<'_> {
    fn into_function_request(self) -> Result<FunctionRequest, ApiError> {
        let method = Method::from_bytes(self.method.0.as_bytes()).map_err(|_| {
            ApiError::BadRequest(format!("'{}' is not an HTTP method.", self.method.0))
        })?;
        let query = query_of(&self.url.0, self.query)?;
        let params = last_of_each_name(self.params)
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect();
        Ok(FunctionRequest {
            method,
            query,
            params,
            headers: self.headers,
            body: self
                .body
                .map(|b| Bytes::copy_from_slice(b.0.as_bytes()))
                .unwrap_or_default(),
        })
    }
}

/// The query of an invocation's request, as the forwarded form has it: the pairs of the URL's
/// query as the client sent them, decoded as warp's query filter decodes a forwarded request
/// (`form_urlencoded`), every value of a repeated name kept in order, so the functions take the
/// same (first) value in both forms. The host's `Query` object (`object`) merges a repeated
/// name's values into one, comma-joined, and drops the order; it is taken, pairs as sent, only
/// when the URL has no query.
fn query_of(url: &str, object: Option<&RawValue>) -> Result<Vec<(String, String)>, ApiError> {
    // Found a byte at a time: `str`'s char search costs more than the scan on URLs this short.
    let Some(start) = url.bytes().position(|b| b == b'?') else {
        let Some(object) = object else {
            return Ok(Vec::new());
        };
        return serde_json::from_str::<QueryObject>(object.get())
            .map(|object| object.0)
            .map_err(|err| {
                ApiError::BadRequest(format!("The request's Query is malformed: {err}."))
            });
    };
    Ok(url_query_pairs(&url[start + 1..]))
}

/// The pairs of a URL's query (up to a `#`), as `form_urlencoded` decodes them. A query without `%` escapes
/// or `+` (the widget's `format=svg&theme=dark`) decodes to its own text, already UTF-8, so it
/// is only split: `form_urlencoded` would percent-decode and UTF-8-check each part again, which
/// was a third of an invocation's work beyond the bare server's.
fn url_query_pairs(query: &str) -> Vec<(String, String)> {
    // One pass over the bytes: `str`'s char patterns cost more than the scan itself on queries
    // this short. `&`, `=` and `#` are ASCII, so every slice falls on a character boundary.
    let mut pairs = Vec::new();
    let (mut start, mut equals) = (0, None);
    for (at, byte) in query.bytes().chain([b'#']).enumerate() {
        match byte {
            b'%' | b'+' => {
                let query = query.split_once('#').map_or(query, |(query, _)| query);
                return url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
            }
            b'=' if equals.is_none() => equals = Some(at),
            b'&' | b'#' => {
                if at > start {
                    let (name, value) = match equals {
                        Some(equals) => (&query[start..equals], &query[equals + 1..at]),
                        None => (&query[start..at], ""),
                    };
                    pairs.push((name.to_owned(), value.to_owned()));
                }
                if byte == b'#' {
                    return pairs;
                }
                (start, equals) = (at + 1, None);
            }
            _ => {}
        }
    }
    pairs
}

/// The host's `Query` object, its pairs in the order sent.
#[serde_as]
#[derive(Deserialize)]
struct QueryObject(#[serde_as(as = "serde_with::Map<_, _>")] Vec<(String, String)>);

/// `pairs` sorted by name, each name once with the last value it had.
fn last_of_each_name<V>(mut pairs: Vec<(String, V)>) -> Vec<(String, V)> {
    // Reversed, a stable sort puts each name's last value first among its equals.
    pairs.reverse();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.dedup_by(|later, kept| later.0 == kept.0);
    pairs
}

impl<'a> HttpInvocationResponse<'a> {
    /// Wraps an HTTP function's response as `Outputs.res`, its body given as the JSON string
    /// literal of `response.body` ([`body_literal`], or kept by [`HttpReplies`]).
    pub fn new(response: &'a FunctionResponse, body: &'a RawValue, logs: &'a [String]) -> Self {
        HttpInvocationResponse {
            outputs: HttpOutputs {
                res: HttpOutput {
                    status_code: response.status.as_u16(),
                    body,
                    headers: SpelledHeaders(&response.headers),
                },
            },
            logs,
            return_value: (),
        }
    }
}

/// `response` wrapped as `Outputs.res`, with `logs`, rendered as JSON bytes.
pub fn http_reply(response: &FunctionResponse, logs: &[String]) -> Bytes {
    let body = body_literal(&response.body);
    render(&HttpInvocationResponse::new(response, &body, logs))
}

/// A response body as a JSON string literal, the form `Outputs.res.body` takes. Bodies here are
/// JSON or text; the lossy path only guards against a bug.
fn body_literal(body: &[u8]) -> Box<RawValue> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    // Writing a string cannot fail; the default (`null`) is only there to need no panic.
    serde_json::value::to_raw_value(&*text).unwrap_or_default()
}

/// The rendered replies of the last few distinct HTTP answers (`{"Outputs":{"res":…},…}`, as
/// bytes). The widget's answer is the same status, headers and body for every visitor until the
/// run changes, and rendering it anew (escaping the body into a JSON string above all) was most
/// of the cost of an invocation reply.
#[derive(Debug, Default)]
pub struct HttpReplies(RwLock<VecDeque<(FunctionResponse, Bytes)>>);

impl HttpReplies {
    /// How many answers are kept: the JSON answer, its SVG cards and an error or two.
    const KEPT: usize = 4;

    /// `response` wrapped as `Outputs.res` and rendered: the kept bytes when an equal response
    /// (status, headers, body) was rendered lately. Only answers with an ETag are kept: they are
    /// the ones that repeat (the widget's answers and cards, their `304`s), and one-off replies
    /// (a webhook's, an error) must not push them out.
    pub fn render(&self, response: &FunctionResponse) -> Bytes {
        let keep = response.headers.contains_key(warp::http::header::ETAG);
        if keep {
            if let Ok(kept) = self.0.read() {
                if let Some((_, reply)) = kept.iter().find(|(kept, _)| same(kept, response)) {
                    return reply.clone();
                }
            }
        }
        let reply = http_reply(response, &[]);
        if keep {
            if let Ok(mut kept) = self.0.write() {
                // Requests that missed together keep one copy.
                if !kept.iter().any(|(kept, _)| same(kept, response)) {
                    if kept.len() >= Self::KEPT {
                        kept.pop_back();
                    }
                    kept.push_front((response.clone(), reply.clone()));
                }
            }
        }
        reply
    }
}

/// Whether two responses are the same reply: status, body, and the same headers in the same
/// order. Comparing in order needs no hashing; the app builds an answer's headers the same way
/// each time, and headers merely reordered only cost a rendering, never a wrong reply.
fn same(a: &FunctionResponse, b: &FunctionResponse) -> bool {
    // A repeated answer's body is the kept answer's own bytes (a reference-counted clone), so
    // the same buffer is known equal without reading it.
    let same_buffer = a.body.as_ptr() == b.body.as_ptr() && a.body.len() == b.body.len();
    a.status == b.status
        && (same_buffer || a.body == b.body)
        && a.headers.len() == b.headers.len()
        && a.headers.iter().eq(b.headers.iter())
}

/// A reply to the host as JSON bytes.
pub fn render(reply: &impl Serialize) -> Bytes {
    let mut bytes = Vec::with_capacity(2048);
    // Only a bug (a map with non-string keys) could fail; `{}` is still a reply the host reads.
    if serde_json::to_writer(&mut bytes, reply).is_err() {
        bytes = b"{}".to_vec();
    }
    Bytes::from(bytes)
}

/// `content-type` → `Content-Type`, `etag` → `ETag`.
fn header_spelling(lowercase: &str) -> Cow<'static, str> {
    let known = match lowercase {
        "content-type" => "Content-Type",
        "etag" => "ETag",
        "cache-control" => "Cache-Control",
        "vary" => "Vary",
        "allow" => "Allow",
        "access-control-allow-origin" => "Access-Control-Allow-Origin",
        "access-control-expose-headers" => "Access-Control-Expose-Headers",
        "access-control-allow-methods" => "Access-Control-Allow-Methods",
        "access-control-allow-headers" => "Access-Control-Allow-Headers",
        "access-control-max-age" => "Access-Control-Max-Age",
        "x-content-type-options" => "X-Content-Type-Options",
        other => {
            return Cow::Owned(
                other
                    .split('-')
                    .map(|part| {
                        let mut chars = part.chars();
                        match chars.next() {
                            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                            None => String::new(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        }
    };
    Cow::Borrowed(known)
}

impl InvocationResponse {
    /// A reply with no outputs (timer functions).
    pub fn logs_only(logs: Vec<String>) -> Self {
        InvocationResponse {
            outputs: serde_json::Map::new(),
            logs,
            return_value: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::StatusCode;

    proptest::proptest! {
        /// The split of a plain query is what `form_urlencoded` makes of it, for any query made
        /// of the characters that matter to it (separators, escapes, `+`) and others.
        #[test]
        fn url_query_pairs_decode_as_form_urlencoded(query in "[a-z=&%+#2F0é ]{0,24}") {
            let before_fragment = query.split('#').next().unwrap_or("");
            let expected: Vec<(String, String)> =
                url::form_urlencoded::parse(before_fragment.as_bytes()).into_owned().collect();
            proptest::prop_assert_eq!(url_query_pairs(&query), expected);
        }
    }

    #[test]
    fn url_query_pairs_split_plain_queries_and_decode_the_rest() {
        let pairs = |query| url_query_pairs(query);
        let owned = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pairs("format=svg&&theme=dark&flag&=x&a=b=c"),
            owned(&[
                ("format", "svg"),
                ("theme", "dark"),
                ("flag", ""),
                ("", "x"),
                ("a", "b=c")
            ])
        );
        assert_eq!(pairs("q=a+b%2Fc"), owned(&[("q", "a b/c")]));
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("a=1#b=2"), owned(&[("a", "1")]));
        assert_eq!(pairs("a=%41#%zz"), owned(&[("a", "A")]));
    }

    const HTTP_FIXTURE: &str =
        include_str!("../tests/data/functions-host/http-invocation-request.json");
    const TIMER_FIXTURE: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request.json");
    const TIMER_NO_MONITOR: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request-no-monitor.json");
    const TIMER_PAST_DUE: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request-past-due.json");

    #[test]
    fn http_fixture_becomes_a_function_request() {
        let invocation = InvocationRequest::parse(HTTP_FIXTURE.as_bytes()).expect("parse");
        let request = invocation.http_request().expect("http");
        assert_eq!(request.method, Method::GET);
        assert_eq!(
            request.query,
            vec![
                ("name".to_owned(), "Functions".to_owned()),
                ("lang".to_owned(), "en".to_owned())
            ]
        );
        // Read by no function, so not kept: Accept, Host, User-Agent, X-Request-Id.
        assert!(request.headers.is_empty(), "{:?}", request.headers);
        assert!(request.body.is_empty());
        assert!(invocation.timer().is_err());
    }

    #[test]
    fn the_invocation_form_keeps_the_headers_functions_read_and_skips_the_rest() {
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun","Method":"GET",
            "Headers":{"ORIGIN":["https://blog.example.org"],"Accept":["*/*"],
            "If-None-Match":["\"a\"","W/\"b\""],"X-Other":["1"],"Cookie":["s=secret"]}}}}"#;
        for request in [
            http_request(envelope.as_bytes()).expect("one pass"),
            InvocationRequest::parse(envelope.as_bytes())
                .and_then(|i| i.http_request())
                .expect("two passes"),
        ] {
            assert_eq!(request.headers.len(), 3, "{:?}", request.headers);
            assert_eq!(request.headers["origin"], "https://blog.example.org");
            let tags: Vec<_> = request.headers.get_all("if-none-match").iter().collect();
            assert_eq!(tags, ["\"a\"", "W/\"b\""]);
        }
    }

    #[test]
    fn the_query_is_the_urls_with_every_value_and_null_params_are_left_out() {
        // As the host sends `?b=1&a=first&A=last`: its object merges `a` and `A`.
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/widget/a?b=1&a=first&A=last%2C+x",
            "Method":"GET","Query":{"b":"1","a":"first,last, x"},
            "Params":{"file":"a","file":"latest-run.js","other":null}}}}"#;
        let request = http_request(envelope.as_bytes()).expect("request");
        assert_eq!(
            request.query,
            vec![
                ("b".into(), "1".into()),
                ("a".into(), "first".into()),
                ("A".into(), "last, x".into())
            ]
        );
        assert_eq!(request.query_value("a"), Some("first"));
        assert_eq!(
            request.params,
            vec![("file".into(), "latest-run.js".into())]
        );
        // Without a query in the URL, the object's pairs as sent: a name twice, first one first.
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun","Method":"GET",
            "Query":{"b":"1","a":"first","a":"last"}}}}"#;
        let request = http_request(envelope.as_bytes()).expect("request");
        assert_eq!(request.query_value("a"), Some("first"));
        assert_eq!(request.query.len(), 3);
        // The object is read only without a query in the URL: beside one, a malformed object
        // is ignored; without one, it is a 400; `null` is no query.
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun?a=1","Method":"GET",
            "Query":[1]}}}"#;
        assert_eq!(
            http_request(envelope.as_bytes()).expect("request").query,
            vec![("a".to_owned(), "1".to_owned())]
        );
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun","Method":"GET",
            "Query":{"a":1}}}}"#;
        assert!(matches!(
            http_request(envelope.as_bytes()),
            Err(ApiError::BadRequest(message)) if message.contains("Query")
        ));
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun","Method":"GET",
            "Query":null}}}"#;
        assert!(http_request(envelope.as_bytes())
            .expect("request")
            .query
            .is_empty());
        // An empty query in the URL is none, whatever the object says.
        let envelope = r#"{"Data":{"req":{"Url":"http://x/api/GetLatestRun?","Method":"GET",
            "Query":{"a":"1"}}}}"#;
        assert!(http_request(envelope.as_bytes())
            .expect("request")
            .query
            .is_empty());
    }

    #[test]
    fn timer_fixtures_parse_whatever_the_binding_name() {
        let normal = InvocationRequest::parse(TIMER_FIXTURE.as_bytes()).expect("parse");
        let timer = normal.timer().expect("timer");
        assert!(!timer.is_past_due);
        assert!(!timer.is_first_run());
        let past_due = InvocationRequest::parse(TIMER_PAST_DUE.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer");
        assert!(past_due.is_past_due);
        let no_monitor = InvocationRequest::parse(TIMER_NO_MONITOR.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer");
        assert!(no_monitor.schedule_status.is_none());
        assert!(no_monitor.is_first_run());
        let renamed = TIMER_FIXTURE.replace("myTimer", "everyTwoHours");
        assert_eq!(
            InvocationRequest::parse(renamed.as_bytes())
                .and_then(|i| i.timer())
                .expect("timer"),
            timer
        );
        let first = TIMER_FIXTURE.replace(
            "2024-11-05T08:00:00.0031853+00:00",
            "0001-01-01T00:00:00+00:00",
        );
        assert!(InvocationRequest::parse(first.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer")
            .is_first_run());
    }

    #[test]
    fn malformed_invocations_are_bad_requests() {
        let cases: &[&str] = &[
            "",
            "   ",
            "null",
            "[]",
            "{",
            "{\"Metadata\":{}}",
            "{\"Data\":[]}",
            "{\"Data\":{\"req\":{\"Url\":5,\"Method\":\"GET\"}}}",
            "{\"Data\":{\"req\":{\"Url\":\"http://x/api/a\",\"Method\":\"G T\"}}}",
            "{\"Data\":{\"req\":{\"Url\":\"http://x/api/a\",\"Method\":\"GET\",\"Headers\":{\"a\":\"not-an-array\"}}}}",
        ];
        for case in cases {
            let result = InvocationRequest::parse(case.as_bytes()).and_then(|i| i.http_request());
            let err = result.expect_err(case);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{case}");
        }
    }

    #[test]
    fn one_pass_decoding_gives_the_two_pass_answer() {
        let compact = serde_json::from_str::<serde_json::Value>(HTTP_FIXTURE)
            .expect("fixture")
            .to_string();
        let with_timer = compact.replacen(
            "\"Data\":{",
            "\"Data\":{\"myTimer\":{\"IsPastDue\":false},",
            1,
        );
        let cases = [
            HTTP_FIXTURE.to_owned(),
            compact.clone(),
            compact.replace("\"req\"", "\"request\""),
            with_timer,
            compact.replace("\"Method\":\"GET\"", "\"Method\":\"G T\""),
            compact.replace("\"Query\":{", "\"Query\":{\"name\":\"first\","),
            compact.replace("\"Data\":{\"req\":", "\"Data\":{\"req\":null,\"x\":"),
            TIMER_FIXTURE.to_owned(),
            "{\"Data\":{}}".to_owned(),
            compact[..compact.len() - 1].to_owned(),
        ];
        for case in &cases {
            let one_pass = http_request(case.as_bytes());
            let two_pass = InvocationRequest::parse(case.as_bytes()).and_then(|i| i.http_request());
            assert_eq!(one_pass, two_pass, "{case}");
        }
        // Bytes that are not UTF-8: the same 400 either way.
        let not_utf8 = b"{\"Data\":{\"req\":{\"Url\":\"\xff\",\"Method\":\"GET\"}}}";
        let two_pass = InvocationRequest::parse(not_utf8).and_then(|i| i.http_request());
        assert_eq!(http_request(not_utf8).err(), two_pass.err());
        assert!(http_request(not_utf8).is_err());
        let fixture = http_request(compact.as_bytes()).expect("the host's envelope");
        assert_eq!(fixture.query.len(), 2);
    }

    #[test]
    fn rendered_replies_are_kept_per_answer_and_equal_a_fresh_rendering() {
        let replies = HttpReplies::default();
        let answer =
            FunctionResponse::json(StatusCode::OK, &serde_json::json!({"name": "\"Run\""}))
                .with_header(warp::http::header::ETAG, "\"abc\"");
        let fresh = |response: &FunctionResponse| http_reply(response, &[]);
        let first = replies.render(&answer);
        assert_eq!(first, fresh(&answer));
        let json: serde_json::Value = serde_json::from_slice(&first).expect("JSON");
        assert_eq!(json["Outputs"]["res"]["body"], "{\"name\":\"\\\"Run\\\"\"}");
        // The same answer again: the same bytes, not rendered anew.
        assert_eq!(replies.render(&answer.clone()).as_ptr(), first.as_ptr());
        // Any difference is another answer: status, a header, the body.
        let mut other_status = answer.clone();
        other_status.status = StatusCode::NOT_MODIFIED;
        let other_header = answer
            .clone()
            .with_header(warp::http::header::VARY, "Origin");
        let mut other_body = answer.clone();
        other_body.body = Bytes::from_static(b"{}");
        for other in [&other_status, &other_header, &other_body] {
            let reply = replies.render(other);
            assert_ne!(reply, first);
            assert_eq!(reply, fresh(other));
        }
        // Replies without an ETag (a webhook's, an error) are rendered each time and kept not.
        let one_off = FunctionResponse::json(StatusCode::OK, &serde_json::json!({"ok": true}));
        let one_off_reply = replies.render(&one_off);
        assert_eq!(one_off_reply, fresh(&one_off));
        assert_ne!(replies.render(&one_off).as_ptr(), one_off_reply.as_ptr());
        assert_eq!(replies.render(&answer).as_ptr(), first.as_ptr());
        // A fourth other answer pushes the first out: rendered anew, to the same bytes.
        let mut fourth = answer.clone();
        fourth.status = StatusCode::NOT_FOUND;
        replies.render(&fourth);
        let again = replies.render(&answer);
        assert_ne!(again.as_ptr(), first.as_ptr());
        assert_eq!(again, first);
    }

    #[test]
    fn http_reply_puts_the_body_as_a_string_and_headers_as_strings() {
        let response = FunctionResponse::json(StatusCode::OK, &serde_json::json!({"a": 1}))
            .with_header(warp::http::header::ETAG, "\"abc\"")
            .with_header(warp::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        let logs = vec!["ok".to_owned()];
        let json: serde_json::Value =
            serde_json::from_slice(&http_reply(&response, &logs)).expect("json");
        assert_eq!(json["Outputs"]["res"]["statusCode"], 200);
        assert_eq!(json["Outputs"]["res"]["body"], "{\"a\":1}");
        assert_eq!(json["Outputs"]["res"]["headers"]["ETag"], "\"abc\"");
        assert_eq!(
            json["Outputs"]["res"]["headers"]["Access-Control-Allow-Origin"],
            "*"
        );
        assert_eq!(
            json["Outputs"]["res"]["headers"]["Content-Type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(json["Logs"][0], "ok");
        assert!(json["ReturnValue"].is_null());
    }
}
