//! The engine: sends the plan's requests (open loop on the timeline, or
//! closed loop at a fixed concurrency), collects every outcome into
//! [`Stats`], shows progress, and hands back the report.

use crate::cli::{Load, Plan};
use crate::error::Error;
use crate::stats::{ErrorKind, Outcome, Report, RunInfo, Stats};
use crate::target::{Planned, RequestFactory};
use crate::verify;
use hyper::client::HttpConnector;
use hyper::{Body, Client};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

type HttpClient = Client<HttpConnector, Body>;

/// Runs `plan` to its end (or Ctrl-C) and returns the checked report.
pub async fn run(plan: &Plan) -> Result<Report, Error> {
    let in_flight = match plan.load {
        Load::Open { max_in_flight, .. } => max_in_flight,
        Load::Closed { concurrency } => concurrency,
    };
    let mut connector = HttpConnector::new();
    // Small requests must not wait for Nagle: that would be the
    // generator's delay in the figures, not the server's.
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder().pool_max_idle_per_host(in_flight).build(connector);

    let count_url = plan.requests.endpoints.count_url();
    let before = match plan.verify {
        Some(_) => Some(verify::count(&client, &count_url).await?),
        None => None,
    };

    // Ctrl-C stops sending; what is in flight finishes and is reported.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_signal = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        })
    };

    let bar = progress_bar(plan);
    let (tx, rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let collector = tokio::spawn(collect(rx, plan.slowest, bar.clone()));
    let sent = match &plan.load {
        Load::Open { timeline, max_in_flight } => {
            open_loop(timeline, *max_in_flight, &plan.requests, &client, plan.timeout, tx, stop_rx.clone(), start).await
        }
        Load::Closed { concurrency } => {
            closed_loop(*concurrency, plan.duration, &plan.requests, &client, plan.timeout, tx, stop_rx.clone(), start)
                .await
        }
    };
    let (stats, last) = match collector.await {
        Ok(done) => done,
        Err(e) => return Err(Error::usage(format!("the collector failed: {e}"))),
    };
    on_signal.abort();
    bar.finish_and_clear();
    let interrupted = *stop_rx.borrow();
    // The run spans its whole duration even when the last request was due
    // (and answered) a little before its end: rates are per that span.
    let answered_by = last.map(|l| l.saturating_duration_since(start)).unwrap_or_default();
    let elapsed = if interrupted { answered_by } else { answered_by.max(plan.duration) };

    let mut report = stats.report(run_info(plan, interrupted), sent, elapsed, &plan.zipkin);
    if let (Some(wait), Some(before)) = (plan.verify, before) {
        report.verify = Some(verify::settle(&client, &count_url, before, &stats, wait).await?);
    }
    report.check(plan.max_error_rate, plan.p99);
    Ok(report)
}

fn run_info(plan: &Plan, interrupted: bool) -> RunInfo {
    let (mode, rate, ramp_s, concurrency) = match &plan.load {
        Load::Open { timeline, .. } => ("open", Some(timeline.rate()), Some(plan.ramp.as_secs_f64()), None),
        Load::Closed { concurrency } => ("closed", None, None, Some(*concurrency)),
    };
    let endpoints = &plan.requests.endpoints;
    let urls: BTreeMap<String, String> =
        plan.requests.mix.weights().iter().map(|(t, _)| (t.name().to_owned(), endpoints.url(*t))).collect();
    RunInfo {
        mode,
        rate,
        ramp_s,
        concurrency,
        duration_s: plan.duration.as_secs_f64(),
        route: endpoints.route.name(),
        mix: plan.requests.mix.to_string(),
        urls,
        interrupted,
    }
}

/// Open loop: request `i` leaves at `start + timeline.at(i)`; its latency
/// counts from then, so waiting for an in-flight slot (when the server
/// falls behind and the cap is reached) is latency too. Returns how many
/// were sent.
///
/// The clock runs on a blocking thread with `std::thread::sleep`, not on
/// tokio's timer: tokio rounds every deadline up to its next millisecond
/// tick, which would add ~0.5-1 ms to every latency measured from the
/// intended time. The requests themselves run on the runtime.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    timeline: &crate::schedule::Timeline,
    max_in_flight: usize,
    requests: &RequestFactory,
    client: &HttpClient,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Outcome>,
    mut stop: watch::Receiver<bool>,
    start: Instant,
) -> u64 {
    let (timeline, requests, client) = (*timeline, requests.clone(), client.clone());
    let runtime = tokio::runtime::Handle::current();
    let clock = tokio::task::spawn_blocking(move || {
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let start = start.into_std();
        let mut i = 0u64;
        while let Some(at) = timeline.at(i) {
            let intended = start + at;
            if !sleep_until(intended, &stop) {
                break;
            }
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                // The cap is reached: wait for a slot (or Ctrl-C).
                Err(_) => {
                    let waited = runtime.block_on(async {
                        tokio::select! {
                            slot = slots.clone().acquire_owned() => slot.ok(),
                            _ = stop.wait_for(|stopped| *stopped) => None,
                        }
                    });
                    match waited {
                        Some(slot) => slot,
                        None => break,
                    }
                }
            };
            let planned = requests.build(i);
            let (client, tx) = (client.clone(), tx.clone());
            runtime.spawn(async move {
                // Taken once a worker runs it: waking one is part of the lag.
                let send_lag = intended.elapsed();
                let outcome = send(&client, planned, Instant::from_std(intended), send_lag, timeout).await;
                drop(slot);
                let _ = tx.send(outcome);
            });
            i += 1;
        }
        i
    });
    clock.await.unwrap_or(0)
}

/// Sleeps until `deadline` (to within the OS timer's slack, tens of µs);
/// false when stopped first.
fn sleep_until(deadline: std::time::Instant, stop: &watch::Receiver<bool>) -> bool {
    // Short enough that Ctrl-C is noticed at once during a slow ramp.
    const CHECK_STOP_EVERY: Duration = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(CHECK_STOP_EVERY));
    }
}

/// Closed loop: `concurrency` workers, each sending its next request when
/// its last one ends, until the duration is up. Latency counts from each
/// actual send (a closed loop has no schedule to fall behind).
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    concurrency: usize,
    duration: Duration,
    requests: &RequestFactory,
    client: &HttpClient,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Outcome>,
    stop: watch::Receiver<bool>,
    start: Instant,
) -> u64 {
    let deadline = start + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, tx, next, stop, requests) =
            (client.clone(), tx.clone(), next.clone(), stop.clone(), requests.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline && !*stop.borrow() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let sent_at = Instant::now();
                let outcome = send(&client, requests.build(i), sent_at, Duration::ZERO, timeout).await;
                if tx.send(outcome).is_err() {
                    break;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    next.load(Ordering::Relaxed)
}

/// Sends one request and reads the whole answer: latency is to its last
/// byte, from `intended`.
async fn send(
    client: &HttpClient,
    planned: Result<Planned, (crate::target::Target, hyper::http::Error)>,
    intended: Instant,
    send_lag: Duration,
    timeout: Duration,
) -> Outcome {
    let Planned { target, trace_id, request } = match planned {
        Ok(p) => p,
        // Requests are built from checked URLs and fixed headers; should
        // one still fail, it is reported, not hidden.
        Err((target, e)) => {
            return Outcome::failed(
                target,
                String::new(),
                Duration::ZERO,
                send_lag,
                ErrorKind::Connect,
                format!("cannot build the request: {e}"),
            )
        }
    };
    let exchange = async {
        let answer = client.request(request).await?;
        let status = answer.status().as_u16();
        hyper::body::to_bytes(answer.into_body()).await?;
        Ok::<u16, hyper::Error>(status)
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    let latency = intended.elapsed();
    match result {
        Ok(Ok(status)) => Outcome::answered(target, trace_id, latency, send_lag, status),
        Ok(Err(e)) => {
            let kind = if e.is_connect() { ErrorKind::Connect } else { ErrorKind::Connection };
            Outcome::failed(target, trace_id, latency, send_lag, kind, e.to_string())
        }
        Err(_) => Outcome::failed(
            target,
            trace_id,
            latency,
            send_lag,
            ErrorKind::Timeout,
            format!("no complete answer within {} ms", timeout.as_millis()),
        ),
    }
}

/// Folds outcomes into the stats until every sender is gone; also returns
/// when the last one arrived (the end of the run).
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    slowest: usize,
    bar: ProgressBar,
) -> (Stats, Option<Instant>) {
    let mut stats = Stats::new(slowest);
    let mut last = None;
    while let Some(outcome) = rx.recv().await {
        stats.record(&outcome);
        last = Some(Instant::now());
        bar.inc(1);
        let errors = stats.errors();
        if errors > 0 {
            bar.set_message(format!("{errors} errors"));
        }
    }
    (stats, last)
}

/// A bar on stderr for the open loop (its total is known), a counter for
/// the closed loop; hidden with --quiet or when stderr is not a terminal.
fn progress_bar(plan: &Plan) -> ProgressBar {
    if plan.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match &plan.load {
        Load::Open { timeline, .. } => {
            (ProgressBar::new(timeline.total()), "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} {per_sec} {msg}")
        }
        Load::Closed { .. } => (ProgressBar::new_spinner(), "{elapsed_precise} {spinner} {pos} done {per_sec} {msg}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
