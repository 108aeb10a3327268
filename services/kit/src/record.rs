//! What the image services record after each success, through their
//! sidecar: the event (service invocation of events-service) and the
//! client's last request (the state store), both carrying the trace.
//!
//! Each event carries an `event_id` made here (UUIDv7), so recording is
//! idempotent end to end: the sidecar's retries (components/resiliency.yaml)
//! and the spool's later deliveries never add a second row.

use crate::dapr::{DaprClient, DaprError, SaveItem};
use crate::spool::Spool;
use crate::trace::TraceContext;
use http::StatusCode;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Recorder {
    dapr: DaprClient,
    events_app_id: String,
    state_store: String,
    /// Idle clients' entries expire by themselves.
    client_ttl_seconds: u64,
    /// Where events go when events-service cannot take them now.
    spool: Option<Spool>,
}

impl Recorder {
    pub fn new(
        dapr: DaprClient,
        events_app_id: impl Into<String>,
        state_store: impl Into<String>,
        client_ttl_seconds: u64,
    ) -> Self {
        Self {
            dapr,
            events_app_id: events_app_id.into(),
            state_store: state_store.into(),
            client_ttl_seconds,
            spool: None,
        }
    }

    /// Events that cannot be recorded at once are spooled, not failed.
    pub fn with_spool(mut self, spool: Spool) -> Self {
        self.spool = Some(spool);
        self
    }

    pub fn dapr(&self) -> &DaprClient {
        &self.dapr
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    /// The body of `create_event`: the original template's fields and the id.
    pub fn event_body(event_id: &str, op_type: &str, input_size: usize, event_ts: i64) -> Value {
        serde_json::json!({ "event_id": event_id, "event_ts": event_ts, "op_type": op_type, "input_size": input_size })
    }

    /// `POST events-service/create_event` with `body`.
    pub async fn deliver(&self, trace: &TraceContext, body: &Value) -> Result<(), DaprError> {
        self.dapr.invoke_json(trace, &self.events_app_id, "create_event", body).await.map(|_| ())
    }

    /// Saves `client:<ip>` = `{ip, last_request_ms, op_type}`.
    pub async fn client_seen(
        &self,
        trace: &TraceContext,
        ip: IpAddr,
        op_type: &str,
        at_ms: i64,
    ) -> Result<(), DaprError> {
        let item = SaveItem::new(
            client_key(ip),
            serde_json::json!({ "ip": ip.to_string(), "last_request_ms": at_ms, "op_type": op_type }),
        )
        .ttl(self.client_ttl_seconds);
        self.dapr.save_state(trace, &self.state_store, &[item]).await
    }

    /// Both, after a successful image request. The event is the record of
    /// the request: recorded now, or (events-service away, after the
    /// sidecar's retries) spooled and delivered later; only when it can be
    /// neither does the request fail, so nothing acknowledged goes
    /// unrecorded. The last-seen entry is bookkeeping: a failure there is
    /// logged and the answer still goes out.
    pub async fn success(
        &self,
        trace: &TraceContext,
        op_type: &str,
        input_size: usize,
        ip: IpAddr,
    ) -> Result<(), crate::ApiError> {
        let now = crate::rt::now_ms();
        let event_id = uuid::Uuid::now_v7().to_string();
        let body = Self::event_body(&event_id, op_type, input_size, now);
        if let Err(e) = self.deliver(trace, &body).await {
            match (&self.spool, worth_spooling(&e)) {
                (Some(spool), true) => match spool.push(trace, &event_id, &body).await {
                    Ok(()) => {
                        tracing::warn!(error = %e, event_id, "event not recorded now: spooled, to be delivered later")
                    }
                    Err(spool_error) => {
                        tracing::error!(error = %e, %spool_error, event_id, "event neither recorded nor spooled: the request fails");
                        // Both failures are passing ones (events-service
                        // away or shedding, the spool contended): a retry
                        // may succeed, so say when rather than 502.
                        return Err(crate::ApiError::unavailable(
                            "dependency_unavailable",
                            "a service this request needs is unavailable; retry shortly",
                        )
                        .with_detail(format_args!("{e}; spool: {spool_error}")));
                    }
                },
                _ => return Err(e.into()),
            }
        }
        if let Err(e) = self.client_seen(trace, ip, op_type, now).await {
            tracing::warn!(error = %e, "cannot save the client's last request");
        }
        Ok(())
    }
}

/// events-service away, slow, or failing on its side: worth trying again
/// later. A 4xx means the event itself is wrong; retrying cannot help.
fn worth_spooling(e: &DaprError) -> bool {
    match e {
        DaprError::Unreachable { .. } | DaprError::Timeout { .. } => true,
        DaprError::Status { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
        DaprError::EtagMismatch { .. } | DaprError::Encode { .. } | DaprError::Decode { .. } => false,
    }
}

pub fn client_key(ip: IpAddr) -> String {
    format!("client:{ip}")
}
