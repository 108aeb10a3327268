//! The command line, checked into a [`Plan`]: everything a run needs, with
//! every value validated before the first request leaves.

use crate::error::Error;
use crate::schedule::Timeline;
use crate::target::{Bodies, Endpoints, Mix, RequestFactory, Route, Target, TargetExt};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load for the image services: a constant arrival rate (latency from the intended send time) or fixed concurrency",
    after_help = "Exit status: 0 passed, 1 could not run, 2 bad arguments, 3 a check failed (--max-error-rate, --p99, --verify)."
)]
pub struct Args {
    /// Open loop: requests per second, sent on a fixed timeline whatever the answers do.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: this many requests at a time, each sent when one finishes.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// How long to send (10s, 500ms, 2m; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Open loop: rise linearly from 0 to --rate over this long (inside --duration).
    #[arg(long, value_parser = parse_duration, requires = "rate")]
    pub ramp: Option<Duration>,
    /// One endpoint: grayscale, classify or events.
    #[arg(long, conflicts_with = "mix")]
    pub target: Option<String>,
    /// Several endpoints by weight, e.g. grayscale=3,classify=1,events=1.
    #[arg(long)]
    pub mix: Option<String>,
    /// The images to send (every .jpg/.png/.gif/.webp/.bmp, in turn).
    #[arg(long, default_value = "../shared/images")]
    pub images: PathBuf,

    /// Send through each service's sidecar invoke API instead of to the app.
    #[arg(long, conflicts_with = "front")]
    pub sidecar: bool,
    /// Send through the web front (its /api/grayscale, /api/classify, /api/events).
    #[arg(long, value_name = "URL")]
    pub front: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 9005)]
    pub grayscale_port: u16,
    #[arg(long, default_value_t = 9006)]
    pub classify_port: u16,
    #[arg(long, default_value_t = 9007)]
    pub events_port: u16,
    /// The sidecars' HTTP ports.
    #[arg(long, default_value_t = 3503)]
    pub grayscale_dapr_port: u16,
    #[arg(long, default_value_t = 3504)]
    pub classify_dapr_port: u16,
    #[arg(long, default_value_t = 3505)]
    pub events_dapr_port: u16,
    /// Spread X-Forwarded-For over N client addresses (10.0.0.1, …); only a
    /// trusted front's header is believed, so aim this at --front.
    #[arg(long, value_name = "N")]
    pub client_ips: Option<u32>,

    /// Give up on a request after this long (counted as a timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Open loop: at most this many requests in flight; past it, sends wait
    /// (and that wait shows in their latency).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,

    /// How many of the slowest requests to list with their trace ids.
    #[arg(long, default_value_t = 5)]
    pub slowest: usize,
    /// Zipkin's base URL for the slowest requests' trace links.
    #[arg(long, default_value = "http://127.0.0.1:9411")]
    pub zipkin: String,

    /// Fail (exit 3) when errors exceed this fraction of requests (0.01 = 1%).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Fail (exit 3) when the 99th percentile latency exceeds this.
    #[arg(long, value_parser = parse_duration)]
    pub p99: Option<Duration>,
    /// Count the events before and after: they must grow by exactly the
    /// image requests answered 2xx (nothing lost, nothing recorded twice).
    #[arg(long)]
    pub verify: bool,
    /// How long --verify waits for the count to settle.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub verify_wait: Duration,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `10s`, `250ms`, `2m`, `1h`, `1.5s`, `500us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration (like 10s, 250ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use us, ms, s, m or h")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// Open or closed loop.
#[derive(Debug, Clone)]
pub enum Load {
    Open { timeline: Timeline, max_in_flight: usize },
    Closed { concurrency: usize },
}

/// A checked run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub load: Load,
    pub duration: Duration,
    pub ramp: Duration,
    pub requests: RequestFactory,
    pub timeout: Duration,
    pub slowest: usize,
    pub zipkin: String,
    pub max_error_rate: Option<f64>,
    pub p99: Option<Duration>,
    /// `Some(wait)` with --verify.
    pub verify: Option<Duration>,
    pub json: bool,
    pub quiet: bool,
}

/// Far past anything this machine (or the services) can take: a typo guard.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_CONCURRENCY: usize = 100_000;

impl Args {
    pub fn plan(self) -> Result<Plan, Error> {
        if self.duration.is_zero() {
            return Err(Error::usage("--duration must be above 0"));
        }
        let ramp = self.ramp.unwrap_or(Duration::ZERO);
        if ramp > self.duration {
            return Err(Error::usage("--ramp must fit inside --duration"));
        }
        if self.timeout.is_zero() {
            return Err(Error::usage("--timeout must be above 0"));
        }
        let load = match (self.rate, self.concurrency) {
            (_, Some(c)) if !(1..=MAX_CONCURRENCY).contains(&c) => {
                return Err(Error::usage(format!("--concurrency must be between 1 and {MAX_CONCURRENCY}")))
            }
            (_, Some(concurrency)) => Load::Closed { concurrency },
            (rate, None) => {
                // No mode named: a gentle open loop.
                let rate = rate.unwrap_or(10.0);
                if !(rate > 0.0 && rate <= MAX_RATE) {
                    return Err(Error::usage(format!("--rate must be above 0 and at most {MAX_RATE}")));
                }
                if !(1..=MAX_CONCURRENCY).contains(&self.max_in_flight) {
                    return Err(Error::usage(format!("--max-in-flight must be between 1 and {MAX_CONCURRENCY}")));
                }
                Load::Open { timeline: Timeline::new(rate, self.duration, ramp), max_in_flight: self.max_in_flight }
            }
        };
        if let Some(rate) = self.max_error_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::usage("--max-error-rate is a fraction between 0 and 1 (0.01 = 1%)"));
            }
        }
        if self.client_ips == Some(0) {
            return Err(Error::usage("--client-ips must be at least 1"));
        }
        let mix = match (&self.target, &self.mix) {
            (Some(t), _) => Mix::single(Target::parse(t)?),
            (None, Some(spec)) => Mix::parse(spec)?,
            (None, None) => Mix::single(Target::Grayscale),
        };
        let route = match (&self.front, self.sidecar) {
            (Some(url), _) => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Error::usage(format!("--front {url:?} must be an http:// URL")));
                }
                Route::Front(url.clone())
            }
            (None, true) => Route::Sidecar,
            (None, false) => Route::Direct,
        };
        let endpoints = Endpoints {
            host: self.host.clone(),
            app_ports: [self.grayscale_port, self.classify_port, self.events_port],
            sidecar_ports: [self.grayscale_dapr_port, self.classify_dapr_port, self.events_dapr_port],
            route,
        };
        // An events-only run needs no images.
        let bodies = if mix.sends_images() { Bodies::from_dir(&self.images)? } else { Bodies::new(Vec::new()) };
        Ok(Plan {
            load,
            duration: self.duration,
            ramp,
            requests: RequestFactory::new(mix, endpoints, bodies, self.client_ips)?,
            timeout: self.timeout,
            slowest: self.slowest,
            zipkin: self.zipkin,
            max_error_rate: self.max_error_rate,
            p99: self.p99,
            verify: self.verify.then_some(self.verify_wait),
            json: self.json,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, Error> {
        let mut all = vec!["loadgen", "--images", "/nonexistent"];
        all.extend_from_slice(args);
        Args::try_parse_from(all).map_err(|e| Error::usage(e.to_string()))?.plan()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn open_loop_by_default_closed_with_concurrency() {
        let p = plan(&["--target", "events", "--duration", "2s"]).expect("plan");
        assert!(matches!(p.load, Load::Open { timeline, .. } if timeline.total() == 20), "{:?}", p.load);
        let p = plan(&["--target", "events", "--concurrency", "4"]).expect("plan");
        assert!(matches!(p.load, Load::Closed { concurrency: 4 }));
        assert!(plan(&["--target", "events", "--rate", "5", "--concurrency", "4"]).is_err(), "one mode at a time");
    }

    #[test]
    fn nonsense_is_refused_before_anything_is_sent() {
        for (args, why) in [
            (vec!["--target", "events", "--rate", "0"], "--rate"),
            (vec!["--target", "events", "--rate", "5", "--ramp", "20s"], "--ramp"),
            (vec!["--target", "events", "--duration", "0s"], "--duration"),
            (vec!["--target", "events", "--max-error-rate", "5"], "fraction"),
            (vec!["--target", "events", "--front", "localhost:8080"], "http://"),
            (vec!["--target", "events", "--client-ips", "0"], "--client-ips"),
            (vec!["--target", "resize"], "unknown target"),
            // Images are read only when the mix sends some.
            (vec!["--target", "grayscale"], "/nonexistent"),
        ] {
            match plan(&args) {
                Err(e) => assert!(e.to_string().contains(why), "{args:?}: {e}"),
                Ok(_) => panic!("{args:?} was accepted"),
            }
        }
    }
}
