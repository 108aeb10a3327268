//! The events service's `POST /create_event` up to the database: the body
//! through kit's JSON reading (`Req::json` = `kit::http::parse_json`), then
//! `NewEvent::validate`.
#![no_main]

use events::store::NewEvent;
use kit::http::parse_json;
use libfuzzer_sys::fuzz_target;
use services_fuzz::assert_client_error;

fuzz_target!(|body: &[u8]| {
    let event = match parse_json::<NewEvent>(body) {
        Ok(event) => event,
        Err(err) => {
            assert_client_error(&err);
            let expected = if body.is_empty() { "empty_body" } else { "invalid_json" };
            assert_eq!(err.code, expected);
            return;
        }
    };
    if let Err(err) = event.validate() {
        assert_client_error(&err);
        assert_eq!(err.code, "invalid_event");
        return;
    }
    // An accepted event is what gets stored: it must survive a round trip
    // through JSON unchanged, and still be valid.
    let json = serde_json::to_vec(&event).expect("a NewEvent serialises");
    let again: NewEvent = parse_json(&json).unwrap_or_else(|e| panic!("re-parse failed: {e:?}"));
    assert_eq!(again, event);
    assert!(again.validate().is_ok());
});
