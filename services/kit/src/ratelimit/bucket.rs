//! The token bucket itself, as pure arithmetic: what is stored, how it
//! refills, what one request takes, and the headers that describe it. No
//! I/O and no clock here: the caller passes `now_ms`, so every case is a
//! unit test.

use serde::{Deserialize, Serialize};

/// A rate-limit policy: a bucket of `burst` tokens refilled at `rate` tokens
/// per second; each request takes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The route template it applies to (`/grayscale`), or `*` for every
    /// route without a policy of its own. Also its name in headers, keys and
    /// metrics.
    pub route: String,
    /// Capacity: how many requests a fresh client may send at once.
    pub burst: u32,
    /// Tokens added per second.
    pub rate: f64,
}

/// Tokens that differ by less than this are equal: refills add fractions
/// (0.2 + 0.2 + …) whose binary sum can fall a hair short of a whole token.
const EPSILON: f64 = 1e-9;

impl Policy {
    /// Seconds for an empty bucket to fill completely, rounded up: the
    /// state entry's TTL (an idle client's bucket is full again by then, so
    /// forgetting it changes nothing) and the policy's window `w`.
    pub fn full_refill_secs(&self) -> u64 {
        ceil_secs(f64::from(self.burst) / self.rate)
    }
}

/// What the state store holds per policy and client.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    /// Wall-clock milliseconds of the last change. Wall clock, not a
    /// monotonic one: replicas compare it, and on one host (or NTP-synced
    /// hosts) it is the one clock they share.
    pub updated_ms: i64,
}

impl Bucket {
    /// A client never seen (or forgotten after the TTL) starts full.
    pub fn full(policy: &Policy, now_ms: i64) -> Self {
        Self { tokens: f64::from(policy.burst), updated_ms: now_ms }
    }

    /// A bucket as read from the state store, held to what this code could
    /// have written there: anyone who reaches a sidecar's state API can
    /// write the key, and a bucket with negative tokens (a client locked out
    /// for as long as it refills), more than the burst (a client let
    /// through unlimited) or an `updated_ms` in the future (refills that
    /// never come) must not decide. Tokens outside `0..=burst` are clamped
    /// (not a number: none); a time ahead of `now_ms` counts as `now_ms`.
    /// A replica whose clock is behind the writer's then grants at most that
    /// skew's worth of extra tokens, and never more than the burst.
    pub fn clamped(self, policy: &Policy, now_ms: i64) -> Self {
        let tokens = if self.tokens.is_nan() { 0.0 } else { self.tokens.clamp(0.0, f64::from(policy.burst)) };
        Self { tokens, updated_ms: self.updated_ms.min(now_ms) }
    }

    /// Whether [`Bucket::clamped`] would change the tokens: a value this
    /// code never writes.
    pub fn tokens_out_of_range(&self, policy: &Policy) -> bool {
        !(0.0..=f64::from(policy.burst)).contains(&self.tokens)
    }

    /// The bucket at `now_ms`: refilled for the time passed, never above the
    /// burst. A clock that went backwards (another replica's clock slightly
    /// ahead) refills nothing rather than taking tokens away.
    pub fn refilled(self, policy: &Policy, now_ms: i64) -> Self {
        let elapsed_ms = now_ms.saturating_sub(self.updated_ms).max(0);
        let tokens = (self.tokens + policy.rate * elapsed_ms as f64 / 1000.0).min(f64::from(policy.burst));
        // Keep the later of the two times so a skewed clock cannot replay
        // a refill that was already counted.
        Self { tokens: tokens.max(0.0), updated_ms: self.updated_ms.max(now_ms) }
    }
}

/// The outcome of one request against a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    pub allowed: bool,
    /// The bucket to store when allowed (unchanged state needs no write
    /// when refused: the refill is recomputed from `updated_ms`).
    pub bucket: Bucket,
    /// Whether `bucket` must be written: a token was taken, or the stored
    /// bucket was out of range and goes back clamped (else a bucket dated
    /// in the future would refuse every request until the key expired, and
    /// a key written by someone else may never expire).
    pub store: bool,
    pub quota: Quota,
}

/// What the headers say about a bucket after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Whole tokens left (`r`).
    pub remaining: u64,
    /// Seconds until the bucket is full again (`t`).
    pub reset_secs: u64,
    /// Seconds until the next token (Retry-After on a refusal; 0 when one
    /// is available now).
    pub retry_after_secs: u64,
}

/// Takes one token from `stored` (or from a fresh bucket) at `now_ms`.
/// A stored bucket is [clamped](Bucket::clamped) first: the store is not
/// trusted.
pub fn take(policy: &Policy, stored: Option<Bucket>, now_ms: i64) -> Taken {
    let clamped = stored.map(|b| b.clamped(policy, now_ms));
    // Not `!=` on the buckets: NaN tokens differ from themselves.
    let repaired = stored
        .zip(clamped)
        .is_some_and(|(b, c)| b.tokens.to_bits() != c.tokens.to_bits() || b.updated_ms != c.updated_ms);
    let bucket = clamped.unwrap_or_else(|| Bucket::full(policy, now_ms)).refilled(policy, now_ms);
    let allowed = bucket.tokens + EPSILON >= 1.0;
    let bucket = if allowed { Bucket { tokens: (bucket.tokens - 1.0).max(0.0), ..bucket } } else { bucket };
    Taken { allowed, bucket, store: allowed || repaired, quota: quota_of(policy, bucket.tokens) }
}

/// The quota a bucket holding `tokens` shows.
pub fn quota_of(policy: &Policy, tokens: f64) -> Quota {
    let remaining = (tokens + EPSILON).floor().max(0.0) as u64;
    let missing = (f64::from(policy.burst) - tokens).max(0.0);
    let to_next = if tokens + EPSILON >= 1.0 { 0.0 } else { 1.0 - tokens };
    Quota {
        remaining,
        reset_secs: ceil_secs(missing / policy.rate),
        // A refusal always says at least 1 s: Retry-After has whole seconds
        // and 0 would invite an immediate retry that is refused again.
        retry_after_secs: if to_next > 0.0 { ceil_secs(to_next / policy.rate).max(1) } else { 0 },
    }
}

fn ceil_secs(secs: f64) -> u64 {
    if secs.is_finite() && secs > EPSILON {
        (secs - EPSILON).ceil() as u64
    } else {
        0
    }
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers, structured
/// fields): one quota policy item, its name a String, `q` the quota (the
/// burst) and `w` the window in seconds (the time a whole quota takes to
/// come back).
pub fn policy_header(policy: &Policy) -> String {
    format!("{};q={};w={}", sf_string(&policy.route), policy.burst, policy.full_refill_secs().max(1))
}

/// `RateLimit`: the same policy's current state, `r` the requests left now
/// and `t` the seconds until the quota is whole again.
pub fn state_header(policy: &Policy, quota: &Quota) -> String {
    format!("{};r={};t={}", sf_string(&policy.route), quota.remaining, quota.reset_secs)
}

/// An RFC 8941 sf-string: printable ASCII in quotes, `"` and `\` escaped;
/// anything else (never in a route template) dropped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(burst: u32, rate: f64) -> Policy {
        Policy { route: "/grayscale".into(), burst, rate }
    }

    /// Runs `n` requests at `now_ms` against a stored bucket, keeping what
    /// each allowed one would store; returns how many were allowed.
    fn run(p: &Policy, bucket: &mut Option<Bucket>, now_ms: i64, n: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..n {
            let t = take(p, *bucket, now_ms);
            if t.allowed {
                *bucket = Some(t.bucket);
                allowed += 1;
            }
        }
        allowed
    }

    #[test]
    fn a_fresh_client_gets_exactly_the_burst() {
        let p = policy(5, 2.0);
        let mut b = None;
        assert_eq!(run(&p, &mut b, 1_000, 12), 5);
    }

    #[test]
    fn after_t_seconds_exactly_floor_rate_times_t_more() {
        let p = policy(10, 3.0);
        let mut b = None;
        assert_eq!(run(&p, &mut b, 0, 10), 10);
        // 1.5 s at 3/s: 4.5 tokens, so 4 requests.
        assert_eq!(run(&p, &mut b, 1_500, 10), 4);
        // The half token left carries over: 0.5 + 0.5 s·3/s = 2.
        assert_eq!(run(&p, &mut b, 2_000, 10), 2);
    }

    #[test]
    fn small_refills_add_up_to_whole_tokens() {
        // 0.2 s at 5/s is exactly one token, however often it is added.
        let p = policy(1, 5.0);
        let mut b = None;
        let mut allowed = 0;
        for step in 0..=1000 {
            allowed += run(&p, &mut b, step * 200, 1);
        }
        assert_eq!(allowed, 1001);
    }

    #[test]
    fn never_more_than_the_burst_after_a_long_idle() {
        let p = policy(3, 100.0);
        let mut b = None;
        run(&p, &mut b, 0, 3);
        assert_eq!(run(&p, &mut b, 3_600_000, 10), 3);
    }

    #[test]
    fn a_clock_behind_the_stored_time_refills_nothing() {
        let p = policy(2, 1.0);
        let stored = Bucket { tokens: 0.5, updated_ms: 10_000 };
        let b = stored.refilled(&p, 9_000);
        assert_eq!(b, Bucket { tokens: 0.5, updated_ms: 10_000 });
        assert!(!take(&p, Some(stored), 9_000).allowed);
    }

    #[test]
    fn a_stored_bucket_out_of_range_is_clamped() {
        let p = policy(5, 1.0);
        let now = 100_000;
        // Negative: no lock-out past an empty bucket's refill.
        let negative = Bucket { tokens: -1e9, updated_ms: now - 1_000 };
        assert!(negative.tokens_out_of_range(&p));
        assert_eq!(negative.clamped(&p, now), Bucket { tokens: 0.0, updated_ms: now - 1_000 });
        let t = take(&p, Some(negative), now);
        assert!(t.allowed && t.store, "1 s at 1/s after an empty bucket is one token");
        assert_eq!(t.bucket, Bucket { tokens: 0.0, updated_ms: now });
        // Above the burst: the burst, not a free pass.
        let mut b = Some(Bucket { tokens: 1e12, updated_ms: now });
        assert_eq!(run(&p, &mut b, now, 100), 5);
        let nan = Bucket { tokens: f64::NAN, updated_ms: now };
        assert_eq!(nan.clamped(&p, now).tokens, 0.0);
        assert!(!take(&p, Some(nan), now).allowed);
        // In the future: counted from now, and written back so, even when
        // refused, so refills come again.
        let future = Bucket { tokens: 0.0, updated_ms: i64::MAX };
        let t = take(&p, Some(future), now);
        assert!(!t.allowed && t.store, "{t:?}");
        assert_eq!(t.bucket, Bucket { tokens: 0.0, updated_ms: now });
        let mut b = Some(t.bucket);
        assert_eq!(run(&p, &mut b, now + 2_000, 3), 2, "2 s at 1/s");
        // A refusal of a bucket in range writes nothing.
        let t = take(&p, b, now + 2_000);
        assert!(!t.allowed && !t.store, "{t:?}");
        // In range: unchanged.
        let fine = Bucket { tokens: 2.5, updated_ms: now - 10 };
        assert!(!fine.tokens_out_of_range(&p));
        assert_eq!(fine.clamped(&p, now), fine);
    }

    #[test]
    fn quota_counts_whole_tokens_reset_and_retry_after() {
        let p = policy(10, 2.0);
        assert_eq!(quota_of(&p, 10.0), Quota { remaining: 10, reset_secs: 0, retry_after_secs: 0 });
        assert_eq!(quota_of(&p, 3.5), Quota { remaining: 3, reset_secs: 4, retry_after_secs: 0 });
        // 0.2 missing to the next token at 2/s: 0.1 s, said as 1 s.
        assert_eq!(quota_of(&p, 0.8), Quota { remaining: 0, reset_secs: 5, retry_after_secs: 1 });
        let slow = policy(2, 0.25);
        assert_eq!(quota_of(&slow, 0.0), Quota { remaining: 0, reset_secs: 8, retry_after_secs: 4 });
    }

    #[test]
    fn headers_are_structured_field_items() {
        let p = policy(20, 5.0);
        assert_eq!(policy_header(&p), r#""/grayscale";q=20;w=4"#);
        let q = quota_of(&p, 7.9);
        assert_eq!(state_header(&p, &q), r#""/grayscale";r=7;t=3"#);
        let odd = Policy { route: "a\"b\\c\u{e9}".into(), burst: 1, rate: 10.0 };
        assert_eq!(policy_header(&odd), r#""a\"b\\c";q=1;w=1"#);
    }

    #[test]
    fn ttl_is_the_time_to_refill_completely() {
        assert_eq!(policy(20, 5.0).full_refill_secs(), 4);
        assert_eq!(policy(5, 2.0).full_refill_secs(), 3);
        assert_eq!(policy(1, 0.1).full_refill_secs(), 10);
    }

    #[test]
    fn the_stored_value_is_tokens_and_updated_ms() {
        let b = Bucket { tokens: 2.5, updated_ms: 1_700_000_000_123 };
        let v = serde_json::to_value(b).expect("json");
        assert_eq!(v, serde_json::json!({"tokens": 2.5, "updated_ms": 1_700_000_000_123i64}));
        assert_eq!(serde_json::from_value::<Bucket>(v).expect("back"), b);
    }
}
