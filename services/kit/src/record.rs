//! What the image services record after each success, through their
//! sidecar: the event (service invocation of events-service) and the
//! client's last request (the state store), both carrying the trace.

use crate::dapr::{DaprClient, DaprError, SaveItem};
use crate::trace::TraceContext;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Recorder {
    dapr: DaprClient,
    events_app_id: String,
    state_store: String,
    /// Idle clients' entries expire by themselves.
    client_ttl_seconds: u64,
}

impl Recorder {
    pub fn new(dapr: DaprClient, events_app_id: impl Into<String>, state_store: impl Into<String>, client_ttl_seconds: u64) -> Self {
        Self { dapr, events_app_id: events_app_id.into(), state_store: state_store.into(), client_ttl_seconds }
    }

    pub fn dapr(&self) -> &DaprClient {
        &self.dapr
    }

    /// `POST events-service/create_event` with the original template's body.
    pub async fn event(&self, trace: &TraceContext, op_type: &str, input_size: usize, event_ts: i64) -> Result<(), DaprError> {
        let body = serde_json::json!({ "event_ts": event_ts, "op_type": op_type, "input_size": input_size });
        self.dapr.invoke_json(trace, &self.events_app_id, "create_event", &body).await.map(|_| ())
    }

    /// Saves `client:<ip>` = `{ip, last_request_ms, op_type}`.
    pub async fn client_seen(&self, trace: &TraceContext, ip: IpAddr, op_type: &str, at_ms: i64) -> Result<(), DaprError> {
        let item = SaveItem::new(
            client_key(ip),
            serde_json::json!({ "ip": ip.to_string(), "last_request_ms": at_ms, "op_type": op_type }),
        )
        .ttl(self.client_ttl_seconds);
        self.dapr.save_state(trace, &self.state_store, &[item]).await
    }

    /// Both, after a successful image request. The event is the record of
    /// the request, so its failure fails the request (nothing acknowledged
    /// goes unrecorded); the last-seen entry is bookkeeping, so its failure
    /// is logged and the answer still goes out.
    pub async fn success(&self, trace: &TraceContext, op_type: &str, input_size: usize, ip: IpAddr) -> Result<(), crate::ApiError> {
        let now = crate::rt::now_ms();
        self.event(trace, op_type, input_size, now).await?;
        if let Err(e) = self.client_seen(trace, ip, op_type, now).await {
            tracing::warn!(error = %e, "cannot save the client's last request");
        }
        Ok(())
    }
}

pub fn client_key(ip: IpAddr) -> String {
    format!("client:{ip}")
}
