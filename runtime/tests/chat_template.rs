//! Prompts rendered by warden equal, byte for byte, what Hugging Face
//! transformers' `apply_chat_template` renders for the same conversations
//! with the same Qwen3 template (references made by
//! `runtime/tests/chat_refs/render.py` and committed).

use std::path::Path;
use warden::chat::{ChatTemplate, Conversation, RenderRequest};

#[test]
fn renderings_equal_transformers_apply_chat_template() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chat_refs");
    let template = ChatTemplate::from_tokenizer_config(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/qwen3-tokenizer/tokenizer_config.json"),
    )
    .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(here.join("conversations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let conv: Conversation =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got = template
            .render(&RenderRequest {
                messages: &conv.messages,
                tools: conv.tools.as_deref().unwrap_or(&[]),
                add_generation_prompt: conv.add_generation_prompt.unwrap_or(true),
                enable_thinking: conv.enable_thinking,
            })
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let want = std::fs::read_to_string(here.join("refs").join(format!("{name}.txt"))).unwrap();
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{name}: differs at byte {at}:\n warden: {:?}\n    ref: {:?}",
                &got[at.saturating_sub(40)..(at + 60).min(got.len())],
                &want[at.saturating_sub(40)..(at + 60).min(want.len())]
            );
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} conversations");
}
