//! Any bytes given to the protocol decoder: it must return, never panic,
//! and whatever it accepts must encode back to bytes it accepts again. A
//! hello, model, application series or check message it accepts goes
//! through the collector's checks (`validate`), which must not panic
//! either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok(message) = curvemon_protocol::decode(frame) {
        match &message {
            curvemon_protocol::Message::Hello(hello) => {
                let _ = curvemon_protocol::validate::hello(hello);
            }
            curvemon_protocol::Message::Model(model) => {
                let _ = curvemon_protocol::validate::model(model);
            }
            curvemon_protocol::Message::AppSeries(series) => {
                let _ = curvemon_protocol::validate::app_series(series);
            }
            curvemon_protocol::Message::Checks(checks) => {
                let _ = curvemon_protocol::validate::checks(checks);
            }
            curvemon_protocol::Message::CheckResults(results) => {
                let _ = curvemon_protocol::validate::check_results(results);
            }
            curvemon_protocol::Message::Resume(resume) => {
                let _ = curvemon_protocol::validate::resume(resume);
            }
            curvemon_protocol::Message::Backfill(backfill) => {
                let _ = curvemon_protocol::validate::backfill(backfill);
            }
            curvemon_protocol::Message::Schema(record) => {
                let _ = curvemon_protocol::validate::schema(&record.schema);
            }
            curvemon_protocol::Message::Gap(gap) => {
                let _ = curvemon_protocol::validate::gap(gap);
            }
            _ => {}
        }
        let again = curvemon_protocol::encode(&message);
        assert!(curvemon_protocol::decode(&again).is_ok(), "re-encoded message does not decode");
    }
});
