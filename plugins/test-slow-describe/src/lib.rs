//! `test-slow-describe`: a plugin whose `describe` sleeps for a minute, for
//! warden's test that loading a tool is bounded by its deadline even while
//! the guest waits in a host call (not only while it runs wasm).

use serde::Deserialize;
use serde_json::json;
use warden_tool_support::{export_tool, Tool, ToolResult};

#[derive(Deserialize)]
struct Args {}

struct SlowDescribe;

impl Tool for SlowDescribe {
    type Args = Args;
    const NAME: &'static str = "slow_describe";
    const DESCRIPTION: &'static str = "Sleeps in describe (test only).";

    fn parameters() -> serde_json::Value {
        // A blocking wait in the host (wasi:io/poll on a monotonic-clock
        // pollable), which epoch interruption cannot stop.
        std::thread::sleep(std::time::Duration::from_secs(60));
        json!({"type": "object"})
    }

    fn run(_: Args) -> ToolResult<String> {
        Ok("awake".into())
    }
}

export_tool!(SlowDescribe);
