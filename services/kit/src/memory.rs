//! The memory budget: how many bytes of request bodies and image decodes a
//! service holds at once (`DECODE_MEMORY_BYTES`).
//!
//! A request reserves before it allocates: its body's declared length before
//! the body is read, then, before decoding, what the image's header implies
//! (`kit::imaging::decode_cost` plus the service's own working copies). A
//! reservation is released when the memory is: with the body, and with the
//! CPU work that decodes (see [`crate::http::Hold`]), which may outlive a
//! request that timed out.
//!
//! Counted in KiB on a semaphore, so a wait is fair and bounded: what can
//! never fit is a 413 at once; what does not fit now waits at most
//! `DECODE_MEMORY_WAIT_MS`, then is a 503 with Retry-After.

use crate::error::ApiError;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// With no cgroup memory limit: natively, and under Wasm, whose linear
/// memory tops out at 4 GiB and whose allocator never returns pages.
pub const UNLIMITED_DEFAULT_NATIVE: u64 = 512 * MIB;
pub const UNLIMITED_DEFAULT_WASM: u64 = 256 * MIB;
/// The smallest budget a derived default gives: one body at the default
/// `MAX_BODY_BYTES`.
pub const MIN_DERIVED: u64 = 16 * MIB;

/// What a service needs besides its budget (code, runtime, model, pools),
/// measured as VmRSS after warm-up, with headroom. The derived budget leaves
/// it free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub native: u64,
    pub wasm: u64,
}

impl Baseline {
    pub const fn mib(native: u64, wasm: u64) -> Self {
        Self { native: native * MIB, wasm: wasm * MIB }
    }

    /// This build's baseline.
    pub fn here(&self) -> u64 {
        if cfg!(target_os = "wasi") {
            self.wasm
        } else {
            self.native
        }
    }
}

/// The default budget: with a cgroup limit, the limit less the baseline less
/// an eighth of the limit (allocator slack, fragmentation, the kernel's page
/// cache charged to the group); without one, a fixed default.
pub fn default_budget(limit: Option<u64>, baseline: u64) -> u64 {
    match limit {
        Some(limit) => limit.saturating_sub(baseline).saturating_sub(limit / 8).max(MIN_DERIVED),
        None if cfg!(target_os = "wasi") => UNLIMITED_DEFAULT_WASM,
        None => UNLIMITED_DEFAULT_NATIVE,
    }
}

/// This process's cgroup memory limit, v2 (`memory.max`) or v1
/// (`memory.limit_in_bytes`); `None` when unlimited or unreadable (under
/// WasmEdge, /sys is not visible).
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_files(&own).iter().find_map(|path| std::fs::read_to_string(path).ok().and_then(|v| parse_limit(&v)))
}

/// Where the limit may be, most specific first: the process's own group
/// (v2 `0::<path>`, v1 `<n>:memory:<path>`), then the namespace's root, which
/// is the container's own group under Docker and Kubernetes.
fn cgroup_files(proc_self_cgroup: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.trim_end_matches('/');
        if controllers.is_empty() && !path.is_empty() {
            files.push(format!("/sys/fs/cgroup{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") && !path.is_empty() {
            files.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
        }
    }
    files.push("/sys/fs/cgroup/memory.max".to_owned());
    files.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned());
    files
}

/// A limit file's value: bytes, or `max` (v2) / a page-rounded 2^63 (v1)
/// for none.
fn parse_limit(value: &str) -> Option<u64> {
    let bytes: u64 = value.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes)
}

/// The budget itself; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    kib: Arc<Semaphore>,
    total: u64,
    wait: Duration,
}

/// Bytes held against the budget, given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    /// KiB held (kept here: tokio_wasi's permits cannot tell).
    kib: u32,
}

impl Reservation {
    /// Bytes held (rounded up to whole KiB).
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * KIB
    }

    /// One reservation holding both.
    pub fn merge(&mut self, mut other: Reservation) {
        self.kib += std::mem::take(&mut other.kib);
        match (&mut self.permit, other.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kib > 0 {
            metrics::reserved().sub(i64::from(self.kib) * KIB as i64);
        }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More than the whole budget: it can never fit.
    NeverFits,
    /// Not free within the wait.
    Busy,
}

impl MemoryBudget {
    /// `total` bytes (0: no budget, `None`), waiting at most `wait` for room.
    pub fn new(total: u64, wait: Duration) -> Option<Self> {
        if total == 0 {
            return None;
        }
        let kib = usize::try_from(total.div_ceil(KIB)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        metrics::register(total);
        Some(Self { kib: Arc::new(Semaphore::new(kib)), total, wait })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> u64 {
        self.kib.available_permits() as u64 * KIB
    }

    /// Reserves `bytes`, waiting at most the budget's wait for room.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, Refusal> {
        let kib = self.permits_for(bytes)?;
        if kib == 0 {
            return Ok(Reservation::default());
        }
        let acquired = match self.kib.clone().try_acquire_many_owned(kib) {
            Ok(permit) => Ok(permit),
            Err(_) => match tokio::time::timeout(self.wait, self.kib.clone().acquire_many_owned(kib)).await {
                Ok(Ok(permit)) => Ok(permit),
                // Closed never happens (we never close it); timed out does.
                _ => Err(Refusal::Busy),
            },
        };
        self.counted(acquired, kib)
    }

    fn permits_for(&self, bytes: u64) -> Result<u32, Refusal> {
        if bytes > self.total {
            metrics::refused(Refusal::NeverFits);
            return Err(Refusal::NeverFits);
        }
        Ok(u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX))
    }

    fn counted(&self, acquired: Result<OwnedSemaphorePermit, Refusal>, kib: u32) -> Result<Reservation, Refusal> {
        match acquired {
            Ok(permit) => {
                metrics::reserved().add(i64::from(kib) * KIB as i64);
                Ok(Reservation { permit: Some(permit), kib })
            }
            Err(refusal) => {
                metrics::refused(refusal);
                Err(refusal)
            }
        }
    }

    /// The answer for an image whose decode was refused: 413 when it can
    /// never fit, else 503 with Retry-After.
    pub fn image_refusal(&self, refusal: Refusal, needed: u64) -> ApiError {
        match refusal {
            Refusal::NeverFits => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "image_too_large",
                format!(
                    "decoding this image takes {} MiB, more than this service's decode memory budget of {} MiB; send fewer pixels",
                    needed.div_ceil(MIB),
                    self.total / MIB
                ),
            ),
            Refusal::Busy => self.busy(),
        }
    }

    /// The answer for a body that does not fit.
    pub fn body_refusal(&self, refusal: Refusal, needed: u64) -> ApiError {
        match refusal {
            Refusal::NeverFits => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body of {} MiB is larger than this service's memory budget of {} MiB",
                    needed.div_ceil(MIB),
                    self.total / MIB
                ),
            ),
            Refusal::Busy => self.busy(),
        }
    }

    fn busy(&self) -> ApiError {
        ApiError::unavailable("overloaded", "the service's memory for images is taken by other requests; retry shortly")
    }
}

/// `memory_budget_bytes`, `memory_reserved_bytes`, `memory_refusals_total{reason}`.
mod metrics {
    use super::Refusal;
    use prometheus::{IntCounterVec, IntGauge};
    use std::sync::OnceLock;

    struct Metrics {
        total: IntGauge,
        reserved: IntGauge,
        refusals: IntCounterVec,
    }

    fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let refusals = crate::metrics::counter_vec(
                "memory_refusals_total",
                "Reservations against the decode memory budget refused: never_fits (413) or busy (503 after the wait).",
                &["reason"],
            );
            for reason in ["never_fits", "busy"] {
                refusals.with_label_values(&[reason]);
            }
            Metrics {
                total: crate::metrics::gauge(
                    "memory_budget_bytes",
                    "The decode memory budget (DECODE_MEMORY_BYTES): bodies and decodes held at once.",
                ),
                reserved: crate::metrics::gauge(
                    "memory_reserved_bytes",
                    "Bytes of the decode memory budget reserved now.",
                ),
                refusals,
            }
        })
    }

    pub(super) fn register(total: u64) {
        get().total.set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    pub(super) fn reserved() -> &'static IntGauge {
        &get().reserved
    }

    pub(super) fn refused(refusal: Refusal) {
        let reason = match refusal {
            Refusal::NeverFits => "never_fits",
            Refusal::Busy => "busy",
        };
        get().refusals.with_label_values(&[reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_the_baseline_and_an_eighth_of_the_limit() {
        assert_eq!(default_budget(Some(256 * MIB), 64 * MIB), 160 * MIB);
        assert_eq!(default_budget(Some(512 * MIB), 160 * MIB), 288 * MIB);
        // A limit too small for the baseline still leaves one body.
        assert_eq!(default_budget(Some(64 * MIB), 96 * MIB), MIN_DERIVED);
        assert_eq!(default_budget(None, 64 * MIB), UNLIMITED_DEFAULT_NATIVE);
    }

    #[test]
    fn limits_are_read_from_v2_and_v1_files() {
        assert_eq!(parse_limit("268435456\n"), Some(256 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        let files = cgroup_files("0::/kubepods/pod1/c1\n");
        assert_eq!(files[0], "/sys/fs/cgroup/kubepods/pod1/c1/memory.max");
        let files = cgroup_files("12:cpu,cpuacct:/x\n4:memory:/docker/abc\n");
        assert_eq!(files[0], "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes");
        assert_eq!(files.last().map(String::as_str), Some("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    }

    #[tokio::test]
    async fn a_reservation_waits_for_room_then_gives_up() {
        let budget = MemoryBudget::new(10 * MIB, Duration::from_millis(50)).expect("a budget");
        assert_eq!(budget.reserve(11 * MIB).await.err(), Some(Refusal::NeverFits));
        let mut held = budget.reserve(6 * MIB).await.expect("fits");
        held.merge(budget.reserve(MIB).await.expect("fits too"));
        assert_eq!((held.bytes(), budget.available()), (7 * MIB, 3 * MIB));
        assert_eq!(budget.reserve(4 * MIB).await.err(), Some(Refusal::Busy));
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(4 * MIB).await.map(|r| r.bytes()) }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        assert_eq!(waiting.await.expect("task"), Ok(4 * MIB));
        assert_eq!(budget.available(), 10 * MIB);
        let refusal = budget.image_refusal(Refusal::NeverFits, 11 * MIB);
        assert_eq!((refusal.status.as_u16(), refusal.code), (413, "image_too_large"));
        assert!(refusal.message.contains("11 MiB") && refusal.message.contains("10 MiB"), "{}", refusal.message);
        let busy = budget.image_refusal(Refusal::Busy, MIB);
        assert_eq!((busy.status.as_u16(), busy.code, busy.retry_after), (503, "overloaded", Some(1)));
    }
}
