//! Prompts rendered by warden equal, byte for byte, what Hugging Face
//! transformers' `apply_chat_template` renders for the same conversations
//! with the same Qwen3 template (references made by
//! `runtime/tests/chat_refs/render.py` and committed).

use std::path::Path;
use warden::chat::{ChatTemplate, Conversation, RenderRequest};

/// Renders every conversation with `template` and compares it with
/// `refs/{dir}NAME.txt`; how many were compared.
fn compare_with_references(template: &ChatTemplate, dir: &str) -> usize {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chat_refs");
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
        let want =
            std::fs::read_to_string(here.join("refs").join(format!("{dir}{name}.txt"))).unwrap();
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{dir}{name}: differs at byte {at}:\n warden: {:?}\n    ref: {:?}",
                &got[at.saturating_sub(40)..(at + 60).min(got.len())],
                &want[at.saturating_sub(40)..(at + 60).min(want.len())]
            );
        }
        checked += 1;
    }
    checked
}

#[test]
fn renderings_equal_transformers_apply_chat_template() {
    let template = ChatTemplate::from_tokenizer_config(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/qwen3-tokenizer/tokenizer_config.json"),
    )
    .unwrap();
    let checked = compare_with_references(&template, "");
    assert!(checked >= 12, "only {checked} conversations");
}

/// warden's built-in templates (`--chat-template NAME`) render as
/// transformers renders them.
#[test]
fn builtin_templates_equal_transformers_apply_chat_template() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/qwen3-tokenizer");
    for (name, _) in warden::chat::BUILTIN_TEMPLATES {
        let template = ChatTemplate::from_spec(name, &model).unwrap();
        let checked = compare_with_references(&template, &format!("{name}/"));
        assert!(checked >= 12, "{name}: only {checked} conversations");
    }
}

mod bounds {
    //! A template is code from a downloaded file: rendering is bounded in
    //! instructions, output, memory held and time, and refused naming the
    //! file and the limit.

    use std::time::{Duration, Instant};
    use warden::chat::{ChatTemplate, Message, RenderLimits, RenderRequest, RENDER_LIMITS};

    fn render(source: &str, limits: RenderLimits) -> anyhow::Result<String> {
        let messages: Vec<Message> =
            serde_json::from_str(r#"[{"role": "user", "content": "hi"}]"#).unwrap();
        ChatTemplate::new(source.into(), None, None)
            .unwrap()
            .with_origin("the chat_template of /models/evil/tokenizer_config.json")
            .with_limits(limits)
            .render(&RenderRequest {
                messages: &messages,
                tools: &[],
                add_generation_prompt: true,
                enable_thinking: None,
            })
    }

    fn small() -> RenderLimits {
        RenderLimits {
            fuel: 200_000,
            output: 1 << 20,
            memory: 32 << 20,
            time: Duration::from_secs(30),
        }
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let t = "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}";
        let e = render(t, small()).unwrap_err().to_string();
        assert!(e.contains("/models/evil/tokenizer_config.json"), "{e}");
        assert!(
            e.contains("ran out of fuel") && e.contains("200000 instructions"),
            "{e}"
        );
        // The shipped bound stops it too.
        let start = Instant::now();
        let e = render(t, RENDER_LIMITS).unwrap_err().to_string();
        assert!(e.contains("ran out of fuel"), "{e}");
        assert!(start.elapsed() < RENDER_LIMITS.time);
    }

    #[test]
    fn a_doubling_string_stops_at_the_memory_bound() {
        let t = "{% set ns = namespace(x='x') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}";
        let e = render(t, small()).unwrap_err().to_string();
        assert!(e.contains("/models/evil/tokenizer_config.json"), "{e}");
        assert!(e.contains("more than 32 MiB at once"), "{e}");
        // Forty straight lines of doubling, no loop: the same.
        let straight = format!(
            "{{% set ns = namespace(x='xx') %}}{}",
            "{% set ns.x = ns.x + ns.x %}".repeat(40)
        );
        let e = render(&straight, small()).unwrap_err().to_string();
        assert!(e.contains("more than 32 MiB at once"), "{e}");
    }

    #[test]
    fn a_huge_output_is_refused_as_it_is_written() {
        let t = "{% for i in range(1000) %}{{ 'x' * 10000 }}{% endfor %}";
        let e = render(t, small()).unwrap_err().to_string();
        assert!(e.contains("more than 1 MiB of prompt"), "{e}");
        assert_eq!(render("{{ 'x' * 1000 }}", small()).unwrap().len(), 1000);
    }

    #[test]
    fn a_slow_render_is_given_up_at_its_deadline() {
        let limits = RenderLimits {
            fuel: 1 << 40,
            time: Duration::from_millis(500),
            ..small()
        };
        let t = "{% set s = 'x' * 1000000 %}{% for a in range(100000) %}{% for b in range(100000) %}{% set y = s.replace('x', 'y') %}{% endfor %}{% endfor %}";
        let start = Instant::now();
        let e = render(t, limits).unwrap_err().to_string();
        assert!(e.contains("ran longer than 0.5 s"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn the_real_template_renders_well_within_the_bounds() {
        // A long conversation with tools renders with the shipped bounds;
        // the fuel it takes is far below them.
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmpl = ChatTemplate::from_tokenizer_config(
            &here.join("assets/qwen3-tokenizer/tokenizer_config.json"),
        )
        .unwrap();
        let mut messages = Vec::new();
        for i in 0..2000 {
            messages.push(serde_json::json!({"role": "user", "content": format!("question {i}")}));
            messages
                .push(serde_json::json!({"role": "assistant", "content": format!("answer {i}")}));
        }
        let messages: Vec<Message> = serde_json::from_value(messages.into()).unwrap();
        let tools: Vec<serde_json::Value> = (0..50)
            .map(|i| serde_json::json!({"type": "function", "function": {"name": format!("t{i}"), "description": "d", "parameters": {"type": "object", "properties": {}}}}))
            .collect();
        let req = RenderRequest {
            messages: &messages,
            tools: &tools,
            add_generation_prompt: true,
            enable_thinking: None,
        };
        let text = tmpl.render(&req).unwrap();
        assert!(text.contains("answer 1999"));
        // A tenth of the fuel still suffices.
        let tenth = RenderLimits {
            fuel: RENDER_LIMITS.fuel / 10,
            ..RENDER_LIMITS
        };
        let tmpl = tmpl.with_limits(tenth);
        assert_eq!(tmpl.render(&req).unwrap(), text);
    }
}
