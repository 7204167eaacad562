//! The load generator and the collector agree: `bench fleet` runs 200
//! simulated agents (each its own key pair and CURVE connection, speaking
//! the protocol with the real agent's model) against a collector; every
//! one comes up, stays up, every sample is stored with no sequence gap, and
//! after the collector is killed and started again on its store they all
//! come back. The scale figures come from the same generator as a
//! benchmark (docs/scaling.md), not from this test.

mod common;

use std::process::Command;

use common::bench_bin;
use serde_json::Value;

#[test]
fn two_hundred_simulated_agents_are_all_up_and_every_sample_is_stored() {
    let agents = 200;
    let seconds = 6;
    let out = Command::new(bench_bin())
        .args([
            "fleet",
            "--agents",
            &agents.to_string(),
            "--seconds",
            &seconds.to_string(),
            "--restart",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench fleet failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let row = &rows[0];
    assert_eq!(row["agents"], agents, "{row}");
    assert!(row["all_up_s"].is_number(), "not every agent came up: {row}");
    assert_eq!(row["min_up"], agents, "an agent went stale during the window: {row}");
    assert_eq!(row["missed"], 0, "samples missed (sequence gaps): {row}");
    // One sample a second each: what the collector took is what was sent,
    // and the store kept every one. The window's edges cut each agent's
    // count by up to a sample either way, and a busy machine can hold one
    // back over an edge: so two samples per agent over the window, a
    // bound that still catches a count doubled or halved.
    let (messages, stored) =
        (row["messages_per_s"].as_f64().unwrap(), row["samples_per_s"].as_f64().unwrap());
    let edges = 2.0 * agents as f64 / seconds as f64;
    assert!((messages - agents as f64).abs() <= edges, "sent {agents}/s, took {messages}/s: {row}");
    assert!((stored - messages).abs() <= edges, "took {messages}/s, stored {stored}/s: {row}");
    assert!(row["restart_all_up_s"].is_number(), "not all back after a restart: {row}");
}
