//! What a request is: which endpoint (the weighted mix), where it goes
//! (app, sidecar or web front), its body, its trace context and, at the
//! front, which client it claims to come from.

use crate::error::Error;
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Body, Method, Request};
use rand::RngCore;
use std::fmt;
use std::path::Path;

/// A target is one of the stack's services (the harness's list: one copy).
pub use stack::Service as Target;

/// What loadgen asks of a target beyond the harness's description of it.
pub trait TargetExt: Sized {
    /// `grayscale`, `classify` or `events`.
    fn parse(name: &str) -> Result<Self, Error>;
    /// The path a request goes to (with the query an events read uses).
    fn path(self) -> &'static str;
    fn method(self) -> Method;
}

impl TargetExt for Target {
    fn parse(name: &str) -> Result<Target, Error> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == name.trim())
            .ok_or_else(|| Error::usage(format!("unknown target {name:?}: expected grayscale, classify or events")))
    }

    fn path(self) -> &'static str {
        match self {
            // One page of the newest events: what the web page reads.
            Target::Events => "/events?limit=20",
            image => image.route(),
        }
    }

    fn method(self) -> Method {
        if self.sends_image() {
            Method::POST
        } else {
            Method::GET
        }
    }
}

/// A target in JSON reports: its name.
pub fn serialize_name<S: serde::Serializer>(target: &Target, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(target.name())
}

/// Which target request `i` goes to: the weights spread evenly by smooth
/// weighted round robin (nginx's), precomputed as one cycle, so any run of
/// `sum(weights)` consecutive requests holds each target exactly `weight`
/// times, and the choice is a pure function of `i` (open and closed loop
/// alike).
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<(Target, u32)>,
    /// Slot → (target, its ordinal among that target's slots in the cycle).
    cycle: Vec<(Target, u32)>,
}

/// A cycle longer than this would be a silly mix (weights are ratios).
const MAX_TOTAL_WEIGHT: u32 = 10_000;

impl Mix {
    pub fn new(weights: Vec<(Target, u32)>) -> Result<Mix, Error> {
        let weights: Vec<(Target, u32)> = weights.into_iter().filter(|(_, w)| *w > 0).collect();
        let total: u32 = weights.iter().map(|(_, w)| *w).sum();
        if total == 0 {
            return Err(Error::usage("the mix has no target with a weight above 0"));
        }
        if total > MAX_TOTAL_WEIGHT {
            return Err(Error::usage(format!(
                "the mix's weights add up to {total}; keep them under {MAX_TOTAL_WEIGHT} (they are ratios)"
            )));
        }
        for (i, (t, _)) in weights.iter().enumerate() {
            if weights[..i].iter().any(|(u, _)| u == t) {
                return Err(Error::usage(format!("{t} appears twice in the mix")));
            }
        }
        let mut current = vec![0i64; weights.len()];
        let mut seen = vec![0u32; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, (_, w)) in current.iter_mut().zip(&weights) {
                *c += i64::from(*w);
            }
            // Ties go to the earlier target, so the cycle is deterministic.
            let mut best = 0;
            for k in 1..current.len() {
                if current[k] > current[best] {
                    best = k;
                }
            }
            current[best] -= i64::from(total);
            cycle.push((weights[best].0, seen[best]));
            seen[best] += 1;
        }
        Ok(Mix { weights, cycle })
    }

    /// `grayscale=3,classify=1,events=1`; a bare name weighs 1.
    pub fn parse(spec: &str) -> Result<Mix, Error> {
        let mut weights = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, w)) => {
                    let w = w
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| Error::usage(format!("weight {w:?} for {name} is not a whole number")))?;
                    (name, w)
                }
                None => (part, 1),
            };
            weights.push((Target::parse(name)?, weight));
        }
        Mix::new(weights)
    }

    pub fn single(target: Target) -> Mix {
        Mix { weights: vec![(target, 1)], cycle: vec![(target, 0)] }
    }

    /// The target of request `i` and how many requests to that target came
    /// before it (to rotate its bodies independently of the other targets).
    pub fn pick(&self, i: u64) -> (Target, u64) {
        let total = self.cycle.len() as u64;
        let (target, ordinal) = self.cycle[(i % total) as usize];
        let weight = self.weights.iter().find(|(t, _)| *t == target).map(|(_, w)| u64::from(*w)).unwrap_or(1);
        (target, (i / total) * weight + u64::from(ordinal))
    }

    pub fn weights(&self) -> &[(Target, u32)] {
        &self.weights
    }

    pub fn sends_images(&self) -> bool {
        self.weights.iter().any(|(t, _)| t.sends_image())
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(t, w)| format!("{t}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// How requests reach the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to each app's port.
    Direct,
    /// Through each app's own sidecar's invoke API, as the services call one
    /// another (traced by daprd from the first hop).
    Sidecar,
    /// Through the web front (nginx), under `/api/…`.
    Front(String),
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Sidecar => "sidecar",
            Route::Front(_) => "front",
        }
    }
}

/// Host and ports of the three services and their sidecars (`make up`'s
/// fixed ports unless overridden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub host: String,
    /// App ports: grayscale, classify, events.
    pub app_ports: [u16; 3],
    /// Sidecar HTTP ports, same order.
    pub sidecar_ports: [u16; 3],
    pub route: Route,
}

impl Endpoints {
    fn index(target: Target) -> usize {
        match target {
            Target::Grayscale => 0,
            Target::Classify => 1,
            Target::Events => 2,
        }
    }

    /// The URL of `path` on `target`'s service, addressed by `route`.
    pub fn url_for(&self, target: Target, route: &Route, path: &str) -> String {
        let i = Self::index(target);
        let path = path.trim_start_matches('/');
        match route {
            Route::Direct => format!("http://{}:{}/{path}", self.host, self.app_ports[i]),
            Route::Sidecar => {
                format!("http://{}:{}/v1.0/invoke/{}/method/{path}", self.host, self.sidecar_ports[i], target.app_id())
            }
            Route::Front(base) => format!("{}/api/{path}", base.trim_end_matches('/')),
        }
    }

    pub fn url(&self, target: Target) -> String {
        self.url_for(target, &self.route, target.path())
    }

    /// Where `--verify` reads the events count: the events service, directly
    /// or through its sidecar. The front proxies only the page's three API
    /// paths, so behind it the count is read through the sidecar.
    pub fn count_url(&self) -> String {
        let route = match self.route {
            Route::Direct => Route::Direct,
            Route::Sidecar | Route::Front(_) => Route::Sidecar,
        };
        self.url_for(Target::Events, &route, "/events/count")
    }
}

/// The image bodies, read once; requests share them (`Bytes` clones are
/// reference counts).
#[derive(Debug, Clone)]
pub struct Bodies {
    images: Vec<(String, Bytes)>,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "webp", "bmp"];

impl Bodies {
    /// Every image in `dir` (by extension), in name order.
    pub fn from_dir(dir: &Path) -> Result<Bodies, Error> {
        let io = |e| Error::Io { path: dir.to_path_buf(), source: e };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut images = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            images.push((name, Bytes::from(bytes)));
        }
        if images.is_empty() {
            return Err(Error::NoImages(dir.to_path_buf()));
        }
        Ok(Bodies { images })
    }

    /// For tests and the benchmark: bodies held in memory.
    pub fn new(images: Vec<(String, Bytes)>) -> Bodies {
        Bodies { images }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    fn nth(&self, n: u64) -> Bytes {
        match self.images.len() {
            0 => Bytes::new(),
            len => self.images[(n % len as u64) as usize].1.clone(),
        }
    }
}

/// A fresh W3C trace context: random trace and parent ids, sampled, so the
/// trace is recorded whatever the sidecar's sampling rate.
pub fn new_traceparent() -> (String, String) {
    let mut rng = rand::thread_rng();
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    // All-zero ids are invalid; the odds are 2^-128, but the check is free.
    while trace.iter().all(|b| *b == 0) {
        rng.fill_bytes(&mut trace);
    }
    while span.iter().all(|b| *b == 0) {
        rng.fill_bytes(&mut span);
    }
    let trace_id = hex(&trace);
    (format!("00-{trace_id}-{}-01", hex(&span)), trace_id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client address request `i` claims, one of `n`, in 10.0.0.0/8.
pub fn client_ip(i: u64, n: u32) -> String {
    let k = (i % u64::from(n.max(1))) as u32 + 1;
    format!("10.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff)
}

/// Builds request `i` of a run.
#[derive(Debug, Clone)]
pub struct RequestFactory {
    pub mix: Mix,
    pub endpoints: Endpoints,
    pub bodies: Bodies,
    /// `--client-ips`: spread `X-Forwarded-For` over this many addresses.
    pub client_ips: Option<u32>,
    /// Precomputed per target: parsing a URI per request is waste.
    uris: Vec<(Target, hyper::Uri)>,
}

/// One request ready to send, with what the report needs to know about it.
pub struct Planned {
    pub target: Target,
    pub trace_id: String,
    pub request: Request<Body>,
}

impl RequestFactory {
    pub fn new(mix: Mix, endpoints: Endpoints, bodies: Bodies, client_ips: Option<u32>) -> Result<Self, Error> {
        let mut uris = Vec::new();
        for (target, _) in mix.weights() {
            let url = endpoints.url(*target);
            let uri = url.parse::<hyper::Uri>().map_err(|e| Error::usage(format!("{url} is not a valid URL: {e}")))?;
            uris.push((*target, uri));
        }
        Ok(Self { mix, endpoints, bodies, client_ips, uris })
    }

    /// Request `i`; on failure (not expected: every part is checked or
    /// generated), its target and why.
    pub fn build(&self, i: u64) -> Result<Planned, (Target, hyper::http::Error)> {
        let (target, ordinal) = self.mix.pick(i);
        let uri = self.uris.iter().find(|(t, _)| *t == target).map(|(_, u)| u.clone()).unwrap_or_default();
        let (traceparent, trace_id) = new_traceparent();
        let mut builder = Request::builder().method(target.method()).uri(uri).header("traceparent", traceparent);
        if let Some(n) = self.client_ips {
            builder = builder.header("x-forwarded-for", client_ip(i, n));
        }
        let body = if target.sends_image() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            Body::from(self.bodies.nth(ordinal))
        } else {
            Body::empty()
        };
        let request = builder.body(body).map_err(|e| (target, e))?;
        Ok(Planned { target, trace_id, request })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(mix: &Mix, n: u64) -> [u64; 3] {
        let mut c = [0u64; 3];
        for i in 0..n {
            c[Endpoints::index(mix.pick(i).0)] += 1;
        }
        c
    }

    #[test]
    fn the_mix_holds_the_weights_exactly_over_each_cycle() {
        let mix = Mix::parse("grayscale=3,classify=1,events=1").expect("mix");
        assert_eq!(counts(&mix, 5), [3, 1, 1]);
        assert_eq!(counts(&mix, 500), [300, 100, 100]);
        // Spread out, not bunched: no target twice in a row except where
        // its share forces it (3 of 5 must touch once per cycle at most).
        let seq: Vec<Target> = (0..5).map(|i| mix.pick(i).0).collect();
        let repeats = seq.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(repeats <= 1, "{seq:?}");
        // Any window of one cycle holds the exact weights, wherever it starts.
        for start in 0..10 {
            let mut c = [0u64; 3];
            for i in start..start + 5 {
                c[Endpoints::index(mix.pick(i).0)] += 1;
            }
            assert_eq!(c, [3, 1, 1], "window from {start}");
        }
    }

    #[test]
    fn ordinals_count_each_targets_own_requests() {
        let mix = Mix::parse("grayscale=2,events=1").expect("mix");
        let mut next = std::collections::HashMap::new();
        for i in 0..30 {
            let (t, ordinal) = mix.pick(i);
            let expected = next.entry(t).or_insert(0u64);
            assert_eq!(ordinal, *expected, "request {i} to {t}");
            *expected += 1;
        }
    }

    #[test]
    fn bad_mixes_are_refused_with_a_reason() {
        for (spec, why) in [
            ("", "no target"),
            ("grayscale=0", "no target"),
            ("resize=1", "unknown target"),
            ("grayscale=x", "not a whole number"),
            ("grayscale=1,grayscale=2", "twice"),
            ("grayscale=9000,classify=2000", "add up"),
        ] {
            match Mix::parse(spec) {
                Err(e) => assert!(e.to_string().contains(why), "{spec}: {e}"),
                Ok(m) => panic!("{spec} was accepted as {m}"),
            }
        }
        assert_eq!(Mix::parse("classify, events=2").map(|m| m.to_string()).ok(), Some("classify=1,events=2".into()));
    }

    #[test]
    fn urls_per_route() {
        let mut ep = Endpoints {
            host: "127.0.0.1".into(),
            app_ports: [9005, 9006, 9007],
            sidecar_ports: [3503, 3504, 3505],
            route: Route::Direct,
        };
        assert_eq!(ep.url(Target::Grayscale), "http://127.0.0.1:9005/grayscale");
        assert_eq!(ep.count_url(), "http://127.0.0.1:9007/events/count");
        ep.route = Route::Sidecar;
        assert_eq!(ep.url(Target::Classify), "http://127.0.0.1:3504/v1.0/invoke/image-api-classify/method/classify");
        assert_eq!(ep.url(Target::Events), "http://127.0.0.1:3505/v1.0/invoke/events-service/method/events?limit=20");
        ep.route = Route::Front("http://127.0.0.1:8080/".into());
        assert_eq!(ep.url(Target::Grayscale), "http://127.0.0.1:8080/api/grayscale");
        assert_eq!(ep.count_url(), "http://127.0.0.1:3505/v1.0/invoke/events-service/method/events/count");
    }

    #[test]
    fn every_request_gets_a_fresh_valid_traceparent() {
        let (a, id_a) = new_traceparent();
        let (b, id_b) = new_traceparent();
        // version-traceid-parentid-flags, lower-case hex (W3C level 1).
        let parts: Vec<&str> = a.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [2, 32, 16, 2], "{a}");
        assert!(a.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{a}");
        assert_eq!(parts[0], "00", "{a}");
        assert!(a.ends_with("-01"), "sampled: {a}");
        assert_eq!(&a[3..35], id_a);
        assert_ne!(id_a, id_b);
        assert_ne!(a, b);
    }

    #[test]
    fn client_ips_cycle_through_n_distinct_addresses() {
        let ips: std::collections::HashSet<String> = (0..1000).map(|i| client_ip(i, 300)).collect();
        assert_eq!(ips.len(), 300);
        assert_eq!(client_ip(0, 300), client_ip(300, 300));
        assert_eq!(client_ip(255, 70_000), "10.0.1.0");
        assert!(ips.iter().all(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));
    }

    #[test]
    fn requests_carry_target_body_and_headers() {
        let bodies =
            Bodies::new(vec![("a.jpg".into(), Bytes::from_static(b"A")), ("b.jpg".into(), Bytes::from_static(b"BB"))]);
        let ep = Endpoints {
            host: "127.0.0.1".into(),
            app_ports: [1, 2, 3],
            sidecar_ports: [4, 5, 6],
            route: Route::Front("http://127.0.0.1:8080".into()),
        };
        let f = RequestFactory::new(Mix::parse("grayscale=1,events=1").expect("mix"), ep, bodies, Some(2))
            .expect("factory");
        let reqs: Vec<Planned> = (0..4).map(|i| f.build(i).expect("request")).collect();
        let targets: Vec<Target> = reqs.iter().map(|p| p.target).collect();
        assert_eq!(targets, [Target::Grayscale, Target::Events, Target::Grayscale, Target::Events]);
        assert_eq!(reqs[0].request.method(), Method::POST);
        assert_eq!(reqs[1].request.method(), Method::GET);
        assert_eq!(reqs[1].request.uri().to_string(), "http://127.0.0.1:8080/api/events?limit=20");
        let xff: Vec<&str> =
            reqs.iter().filter_map(|p| p.request.headers().get("x-forwarded-for")?.to_str().ok()).collect();
        assert_eq!(xff, ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]);
        let tp = reqs[0].request.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(&tp[3..35], reqs[0].trace_id);
    }
}
