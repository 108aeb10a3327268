//! What a run measured: every outcome goes into HDR histograms (all requests
//! and per target), status and error counts, and a short list of the slowest
//! requests with their trace ids. [`Stats::report`] freezes it into the
//! [`Report`] that is printed (text or JSON) and checked.

use crate::target::Target;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

/// Why a request got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ErrorKind {
    /// No connection (refused, unreachable): the server never saw it.
    #[serde(rename = "connect")]
    Connect,
    /// No complete answer within `--timeout`; the server may still act on it.
    #[serde(rename = "timeout")]
    Timeout,
    /// The connection broke after the request went out (reset, closed
    /// early): the server may have acted on it.
    #[serde(rename = "connection")]
    Connection,
    #[serde(rename = "4xx")]
    Client,
    #[serde(rename = "5xx")]
    Server,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Client => "4xx",
            ErrorKind::Server => "5xx",
        }
    }

    /// The server may or may not have done the work (and recorded it).
    pub fn outcome_unknown(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Connection)
    }
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Target,
    pub trace_id: String,
    /// From the intended send time (open loop) or the actual one (closed
    /// loop) to the last byte of the answer, or to the failure.
    pub latency: Duration,
    /// How late it left against its intended time (open loop).
    pub send_lag: Duration,
    /// The status, when an answer came.
    pub status: Option<u16>,
    /// Transport failures carry a message for the report.
    pub error: Option<(ErrorKind, String)>,
}

impl Outcome {
    pub fn answered(target: Target, trace_id: String, latency: Duration, send_lag: Duration, status: u16) -> Self {
        let error = match status {
            400..=499 => Some((ErrorKind::Client, String::new())),
            500..=599 => Some((ErrorKind::Server, String::new())),
            _ => None,
        };
        Outcome { target, trace_id, latency, send_lag, status: Some(status), error }
    }

    pub fn failed(
        target: Target,
        trace_id: String,
        latency: Duration,
        send_lag: Duration,
        kind: ErrorKind,
        message: String,
    ) -> Self {
        Outcome { target, trace_id, latency, send_lag, status: None, error: Some((kind, message)) }
    }
}

/// Microseconds, 1 µs to 1 h, 3 significant digits.
#[expect(clippy::expect_used, reason = "fixed, valid bounds: this cannot fail, and a test covers it")]
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 3_600_000_000)
}

#[derive(Debug)]
struct TargetStats {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    count: u64,
}

impl TargetStats {
    fn new() -> Self {
        Self { latency: histogram(), statuses: BTreeMap::new(), errors: BTreeMap::new(), count: 0 }
    }
}

/// Latency, trace id, target, status: ordered by latency first.
type SlowEntry = (Duration, String, Target, Option<u16>);

#[derive(Debug)]
pub struct Stats {
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    error_samples: BTreeMap<ErrorKind, String>,
    targets: BTreeMap<Target, TargetStats>,
    /// A min-heap of the slowest so far, so the fastest of them drops out.
    slowest: BinaryHeap<Reverse<SlowEntry>>,
    keep_slowest: usize,
    completed: u64,
    /// Image requests that were answered 2xx: each must have recorded one
    /// event.
    image_acked: u64,
    /// Image requests whose fate is unknown (timeout, broken connection).
    image_unknown: u64,
}

impl Stats {
    pub fn new(keep_slowest: usize) -> Self {
        Self {
            latency: histogram(),
            send_lag: histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
            targets: BTreeMap::new(),
            slowest: BinaryHeap::new(),
            keep_slowest,
            completed: 0,
            image_acked: 0,
            image_unknown: 0,
        }
    }

    pub fn record(&mut self, o: &Outcome) {
        self.completed += 1;
        let t = self.targets.entry(o.target).or_insert_with(TargetStats::new);
        t.count += 1;
        // A refused connection fails in microseconds and would flatter the
        // percentiles; everything else, timeouts included, is latency.
        let timed = !matches!(o.error, Some((ErrorKind::Connect, _)));
        if timed {
            let us = micros(o.latency);
            // Values are clamped into the histogram's bounds, so these cannot fail.
            let _ = self.latency.record(us);
            let _ = t.latency.record(us);
        }
        let _ = self.send_lag.record(micros(o.send_lag));
        if let Some(status) = o.status {
            *self.statuses.entry(status).or_default() += 1;
            *t.statuses.entry(status).or_default() += 1;
            if o.target.sends_image() && (200..300).contains(&status) {
                self.image_acked += 1;
            }
        }
        if let Some((kind, message)) = &o.error {
            *self.errors.entry(*kind).or_default() += 1;
            *t.errors.entry(*kind).or_default() += 1;
            if !message.is_empty() {
                self.error_samples.entry(*kind).or_insert_with(|| message.clone());
            }
            if kind.outcome_unknown() && o.target.sends_image() {
                self.image_unknown += 1;
            }
        }
        if timed && self.keep_slowest > 0 {
            self.slowest.push(Reverse((o.latency, o.trace_id.clone(), o.target, o.status)));
            if self.slowest.len() > self.keep_slowest {
                self.slowest.pop();
            }
        }
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn image_acked(&self) -> u64 {
        self.image_acked
    }

    pub fn image_unknown(&self) -> u64 {
        self.image_unknown
    }

    /// The figures, for a run that sent `sent` requests over `elapsed`.
    pub fn report(&self, run: RunInfo, sent: u64, elapsed: Duration, zipkin: &str) -> Report {
        let mut slowest: Vec<_> = self.slowest.iter().map(|Reverse(s)| s.clone()).collect();
        slowest.sort_by_key(|s| Reverse(s.0));
        let zipkin = zipkin.trim_end_matches('/');
        let secs = elapsed.as_secs_f64();
        let errors = self.errors();
        Report {
            run,
            sent,
            completed: self.completed,
            elapsed_s: secs,
            throughput_rps: if secs > 0.0 { self.completed as f64 / secs } else { 0.0 },
            error_rate: if sent > 0 { errors as f64 / sent as f64 } else { 0.0 },
            latency_ms: Percentiles::of(&self.latency),
            send_lag_ms: Percentiles::of(&self.send_lag),
            status: self.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors: self.errors.iter().map(|(k, n)| (k.name().to_owned(), *n)).collect(),
            error_samples: self.error_samples.iter().map(|(k, m)| (k.name().to_owned(), m.clone())).collect(),
            targets: self
                .targets
                .iter()
                .map(|(t, s)| {
                    let summary = TargetReport {
                        requests: s.count,
                        status: s.statuses.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
                        errors: s.errors.iter().map(|(k, n)| (k.name().to_owned(), *n)).collect(),
                        latency_ms: Percentiles::of(&s.latency),
                    };
                    (t.name().to_owned(), summary)
                })
                .collect(),
            slowest: slowest
                .into_iter()
                .map(|(latency, trace_id, target, status)| Slow {
                    latency_ms: ms(latency),
                    target,
                    status,
                    url: format!("{zipkin}/zipkin/traces/{trace_id}"),
                    trace_id,
                })
                .collect(),
            image_acked: self.image_acked,
            image_unknown: self.image_unknown,
            verify: None,
            checks: Vec::new(),
            passed: true,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How the run was set up, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// "open" (arrival rate) or "closed" (concurrency).
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub ramp_s: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_s: f64,
    pub route: &'static str,
    pub mix: String,
    /// Target → the URL its requests went to.
    pub urls: BTreeMap<String, String>,
    /// Set when Ctrl-C cut the run short.
    pub interrupted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    /// In milliseconds, from a histogram in microseconds; zeros when empty.
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles { p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0, mean: 0.0 };
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            max: h.max() as f64 / 1000.0,
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub requests: u64,
    pub status: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slow {
    pub latency_ms: f64,
    #[serde(serialize_with = "crate::target::serialize_name")]
    pub target: Target,
    pub status: Option<u16>,
    pub trace_id: String,
    /// The trace in Zipkin.
    pub url: String,
}

/// The `--verify` verdict: how the events count moved against what was
/// acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub before: u64,
    pub after: u64,
    /// 2xx answers to image requests: each must have left exactly one event.
    pub acknowledged: u64,
    /// Image requests that timed out or lost their connection: each may or
    /// may not have left one.
    pub unknown: u64,
    /// Acknowledged requests with no event.
    pub lost: u64,
    /// Events beyond what the acknowledged and unknown requests explain:
    /// recorded twice, or recorded for a request that was refused.
    pub extra: u64,
    /// Whether the count was still moving when the wait ran out.
    pub settled: bool,
    pub passed: bool,
}

impl Verification {
    pub fn judge(before: u64, after: u64, acknowledged: u64, unknown: u64, settled: bool) -> Self {
        let grew = after.saturating_sub(before);
        let lost = acknowledged.saturating_sub(grew);
        let extra = grew.saturating_sub(acknowledged + unknown);
        // A count that shrank means someone deleted events: not provable.
        let passed = after >= before && lost == 0 && extra == 0;
        Verification { before, after, acknowledged, unknown, lost, extra, settled, passed }
    }
}

/// A pass/fail threshold from the command line.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub limit: f64,
    pub value: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    /// Requests started.
    pub sent: u64,
    /// Requests that ended (answered or failed).
    pub completed: u64,
    pub elapsed_s: f64,
    pub throughput_rps: f64,
    /// Errors (transport, 4xx, 5xx) over requests sent.
    pub error_rate: f64,
    pub latency_ms: Percentiles,
    /// Open loop: how late requests left against the timeline (the
    /// generator's own accuracy; large values mean it could not keep up).
    pub send_lag_ms: Percentiles,
    pub status: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub error_samples: BTreeMap<String, String>,
    pub targets: BTreeMap<String, TargetReport>,
    pub slowest: Vec<Slow>,
    pub image_acked: u64,
    pub image_unknown: u64,
    pub verify: Option<Verification>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

impl Report {
    /// Applies `--max-error-rate` and `--p99`; a failed `--verify` fails the
    /// report too.
    pub fn check(&mut self, max_error_rate: Option<f64>, p99: Option<Duration>) {
        if let Some(limit) = max_error_rate {
            let value = self.error_rate;
            self.checks.push(Check { name: "error rate".into(), limit, value, passed: value <= limit });
        }
        if let Some(limit) = p99 {
            let (limit, value) = (ms(limit), self.latency_ms.p99);
            self.checks.push(Check { name: "p99 ms".into(), limit, value, passed: value <= limit });
        }
        self.passed = self.checks.iter().all(|c| c.passed) && self.verify.as_ref().is_none_or(|v| v.passed);
    }

    /// Why the run failed, one line each (empty when it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} {} exceeds the limit {}", c.name, fmt_num(c.value), fmt_num(c.limit)))
            .collect();
        if let Some(v) = self.verify.as_ref().filter(|v| !v.passed) {
            out.push(format!(
                "verify: events {} → {} for {} acknowledged image requests ({} of unknown outcome): {} lost, {} extra",
                v.before, v.after, v.acknowledged, v.unknown, v.lost, v.extra
            ));
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the report: {e}\"}}"))
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let r = &self.run;
        let load = match (r.rate, r.concurrency) {
            (Some(rate), _) => {
                let ramp = r.ramp_s.filter(|s| *s > 0.0).map(|s| format!(" after a {s} s ramp")).unwrap_or_default();
                format!("open loop, {} req/s{ramp}", fmt_num(rate))
            }
            (None, Some(c)) => format!("closed loop, {c} at a time"),
            (None, None) => "?".into(),
        };
        line(format!(
            "{load} for {} s, {} via {}{}",
            fmt_num(r.duration_s),
            r.mix,
            r.route,
            if r.interrupted { " (interrupted)" } else { "" }
        ));
        line(format!(
            "requests   {} sent, {} done in {:.2} s: {:.1} req/s",
            self.sent, self.completed, self.elapsed_s, self.throughput_rps
        ));
        let status: Vec<String> = self.status.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
        line(format!("status     {}", if status.is_empty() { "none".into() } else { status.join("  ") }));
        let errors: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        line(format!(
            "errors     {} ({:.2}%)",
            if errors.is_empty() { "none".into() } else { errors.join("  ") },
            self.error_rate * 100.0
        ));
        for (kind, message) in &self.error_samples {
            line(format!("           {kind}: {message}"));
        }
        line(format!("latency    {}", fmt_percentiles(&self.latency_ms)));
        if r.mode == "open" {
            line(format!(
                "send lag   p50 {}  p99 {}  max {}  (how late requests left against the schedule)",
                fmt_ms(self.send_lag_ms.p50),
                fmt_ms(self.send_lag_ms.p99),
                fmt_ms(self.send_lag_ms.max)
            ));
        }
        if self.targets.len() > 1 {
            for (name, t) in &self.targets {
                let status: Vec<String> = t.status.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
                line(format!(
                    "  {name:<9} {:>6} req  p50 {}  p99 {}  {}",
                    t.requests,
                    fmt_ms(t.latency_ms.p50),
                    fmt_ms(t.latency_ms.p99),
                    status.join(" ")
                ));
            }
        }
        if !self.slowest.is_empty() {
            line("slowest (open in Zipkin):".into());
            for s in &self.slowest {
                let status = s.status.map(|c| c.to_string()).unwrap_or_else(|| "—".into());
                line(format!("  {:>10}  {:<9} {status:>3}  {}", fmt_ms(s.latency_ms), s.target.name(), s.url));
            }
        }
        if let Some(v) = &self.verify {
            let verdict = if v.passed { "nothing lost, nothing recorded twice" } else { "FAILED" };
            line(format!(
                "verify     events {} → {} (+{}) for {} acknowledged image requests{}: {verdict}{}",
                v.before,
                v.after,
                v.after.saturating_sub(v.before),
                v.acknowledged,
                if v.unknown > 0 { format!(" and {} of unknown outcome", v.unknown) } else { String::new() },
                if v.settled { "" } else { " (count still moving)" }
            ));
        }
        for c in &self.checks {
            line(format!(
                "check      {} {} ≤ {}: {}",
                c.name,
                fmt_num(c.value),
                fmt_num(c.limit),
                if c.passed { "ok" } else { "FAILED" }
            ));
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    }
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn fmt_percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        fmt_ms(p.p50),
        fmt_ms(p.p90),
        fmt_ms(p.p99),
        fmt_ms(p.p99_9),
        fmt_ms(p.max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunInfo {
        RunInfo {
            mode: "open",
            rate: Some(100.0),
            ramp_s: None,
            concurrency: None,
            duration_s: 10.0,
            route: "direct",
            mix: "grayscale=1,events=1".into(),
            urls: BTreeMap::new(),
            interrupted: false,
        }
    }

    fn ok(target: Target, ms: u64, status: u16) -> Outcome {
        Outcome::answered(target, format!("{ms:032x}"), Duration::from_millis(ms), Duration::ZERO, status)
    }

    /// 1..=1000 ms, one each: the percentiles are known exactly (within
    /// the histogram's 3 significant digits).
    fn uniform() -> Stats {
        let mut s = Stats::new(3);
        for ms in 1..=1000u64 {
            s.record(&ok(if ms % 2 == 0 { Target::Events } else { Target::Grayscale }, ms, 200));
        }
        s
    }

    #[test]
    fn percentiles_match_a_known_distribution() {
        let r = uniform().report(run(), 1000, Duration::from_secs(10), "http://z:9411");
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        let p = r.latency_ms;
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.p99_9, 999.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(close(p.mean, 500.5), "{p:?}");
        assert_eq!(r.throughput_rps, 100.0);
        assert_eq!(r.targets["events"].requests, 500);
        assert!(close(r.targets["events"].latency_ms.max, 1000.0));
        assert!(close(r.targets["grayscale"].latency_ms.max, 999.0));
    }

    #[test]
    fn the_slowest_are_kept_slowest_first_with_zipkin_links() {
        let r = uniform().report(run(), 1000, Duration::from_secs(10), "http://z:9411/");
        let lat: Vec<f64> = r.slowest.iter().map(|s| s.latency_ms).collect();
        assert_eq!(lat, [1000.0, 999.0, 998.0]);
        assert_eq!(r.slowest[0].url, format!("http://z:9411/zipkin/traces/{:032x}", 1000));
        assert_eq!(r.slowest[0].trace_id, format!("{:032x}", 1000));
    }

    #[test]
    fn statuses_and_errors_are_counted_by_kind() {
        let mut s = Stats::new(0);
        s.record(&ok(Target::Grayscale, 5, 200));
        s.record(&ok(Target::Grayscale, 5, 200));
        s.record(&ok(Target::Classify, 5, 429));
        s.record(&ok(Target::Classify, 5, 503));
        s.record(&ok(Target::Events, 5, 200));
        let fail = |kind, msg: &str| {
            Outcome::failed(Target::Grayscale, "t".into(), Duration::from_secs(1), Duration::ZERO, kind, msg.into())
        };
        s.record(&fail(ErrorKind::Connect, "connection refused"));
        s.record(&fail(ErrorKind::Timeout, "no answer in 1 s"));
        let r = s.report(run(), 8, Duration::from_secs(1), "z");
        assert_eq!(r.status, BTreeMap::from([("200".into(), 3), ("429".into(), 1), ("503".into(), 1)]));
        assert_eq!(
            r.errors,
            BTreeMap::from([("connect".into(), 1), ("timeout".into(), 1), ("4xx".into(), 1), ("5xx".into(), 1)])
        );
        assert_eq!(r.error_samples["connect"], "connection refused");
        assert_eq!(r.error_rate, 0.5);
        // Only 2xx image answers count as acknowledged; a timed-out image
        // request may or may not have recorded its event.
        assert_eq!((r.image_acked, r.image_unknown), (2, 1));
        assert_eq!(r.targets["classify"].errors, BTreeMap::from([("4xx".into(), 1), ("5xx".into(), 1)]));
        // The refused connection is not latency; the timeout is (within
        // the histogram's 3 significant digits).
        assert!((r.latency_ms.max - 1000.0).abs() < 1.0, "{:?}", r.latency_ms);
        assert_eq!(r.completed, 7);
    }

    #[test]
    fn thresholds_fail_the_report_and_say_which() {
        let mut r = uniform().report(run(), 1000, Duration::from_secs(10), "z");
        r.check(Some(0.0), Some(Duration::from_millis(2000)));
        assert!(r.passed, "{:?}", r.failures());
        r.checks.clear();
        r.check(Some(0.0), Some(Duration::from_millis(500)));
        assert!(!r.passed);
        let failures = r.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("p99 ms 990") && failures[0].contains("limit 500"), "{failures:?}");
    }

    #[test]
    fn verification_tells_lost_from_extra() {
        let ok = Verification::judge(10, 20, 10, 0, true);
        assert!(ok.passed && ok.lost == 0 && ok.extra == 0);
        let lost = Verification::judge(10, 18, 10, 0, true);
        assert_eq!((lost.passed, lost.lost, lost.extra), (false, 2, 0));
        let twice = Verification::judge(10, 21, 10, 0, true);
        assert_eq!((twice.passed, twice.lost, twice.extra), (false, 0, 1));
        // Timed-out requests may account for up to that many more events.
        assert!(Verification::judge(10, 22, 10, 2, true).passed);
        assert!(Verification::judge(10, 20, 10, 2, true).passed);
        assert!(!Verification::judge(10, 23, 10, 2, true).passed);
        assert!(!Verification::judge(10, 5, 0, 0, true).passed, "a shrinking count proves nothing");
    }

    #[test]
    fn json_has_the_fields_machines_read() {
        let mut s = uniform();
        s.record(&ok(Target::Grayscale, 3, 503));
        let mut r = s.report(run(), 1001, Duration::from_secs(10), "http://z:9411");
        r.verify = Some(Verification::judge(0, 500, 500, 0, true));
        r.check(Some(0.01), None);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(v["sent"], 1001);
        assert_eq!(v["completed"], 1001);
        assert_eq!(v["status"]["200"], 1000);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["errors"]["5xx"], 1);
        assert_eq!(v["targets"]["grayscale"]["status"]["503"], 1);
        assert_eq!(v["targets"]["events"]["requests"], 500);
        for key in ["p50", "p90", "p99", "p99.9", "max", "mean"] {
            assert!(v["latency_ms"][key].is_f64(), "latency_ms.{key}: {}", v["latency_ms"]);
        }
        assert_eq!(v["slowest"].as_array().map(Vec::len), Some(3));
        assert!(v["slowest"][0]["url"].as_str().is_some_and(|u| u.starts_with("http://z:9411/zipkin/traces/")));
        assert_eq!(v["run"]["mode"], "open");
        assert_eq!(v["verify"]["passed"], true);
        assert_eq!(v["checks"][0]["name"], "error rate");
        assert_eq!(v["passed"], true);
    }

    #[test]
    fn the_text_report_names_each_part() {
        let mut r = uniform().report(run(), 1000, Duration::from_secs(10), "http://z:9411");
        r.verify = Some(Verification::judge(0, 500, 500, 0, true));
        let text = r.to_text();
        for part in [
            "open loop, 100 req/s",
            "1000 sent",
            "200 ×1000",
            "errors     none",
            "p99.9 999.",
            "send lag",
            "slowest",
            "nothing lost",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
    }
}
