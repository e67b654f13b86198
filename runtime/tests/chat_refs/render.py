#!/usr/bin/env python3
"""Reference renderings for warden's chat-template test (test tooling only).

Renders every conversation in conversations/*.json with Hugging Face
transformers' `apply_chat_template`, using the Qwen3 tokenizer and template
committed in runtime/assets/qwen3-tokenizer, and writes refs/NAME.txt; and
with each of warden's built-in templates (runtime/assets/templates), into
refs/TEMPLATE/NAME.txt. The
Rust test (runtime/tests/chat_template.rs) renders the same conversations and
compares bytes. Run again only when a conversation is added or changed:

    pip install transformers
    python3 runtime/tests/chat_refs/render.py
"""
import json
import pathlib

import transformers

here = pathlib.Path(__file__).resolve().parent
assets = here.parents[1] / "assets" / "qwen3-tokenizer"
tokenizer = transformers.AutoTokenizer.from_pretrained(str(assets))
(here / "refs").mkdir(exist_ok=True)
# warden's built-in templates, rendered for the same conversations.
builtins = {
    "chatml-tools": (here.parents[1] / "assets" / "templates" / "chatml-tools.jinja").read_text(
        encoding="utf-8"),
}
for name, source in builtins.items():
    (here / "refs" / name).mkdir(exist_ok=True)
    for path in sorted((here / "conversations").glob("*.json")):
        conv = json.loads(path.read_text(encoding="utf-8"))
        text = tokenizer.apply_chat_template(
            conv["messages"],
            tools=conv.get("tools"),
            add_generation_prompt=conv.get("add_generation_prompt", True),
            tokenize=False,
            chat_template=source,
        )
        (here / "refs" / name / f"{path.stem}.txt").write_text(text, encoding="utf-8")
        print(f"{name}/{path.stem}: {len(text)} chars")
for path in sorted((here / "conversations").glob("*.json")):
    conv = json.loads(path.read_text(encoding="utf-8"))
    kwargs = {}
    if "enable_thinking" in conv:
        kwargs["enable_thinking"] = conv["enable_thinking"]
    text = tokenizer.apply_chat_template(
        conv["messages"],
        tools=conv.get("tools"),
        add_generation_prompt=conv.get("add_generation_prompt", True),
        tokenize=False,
        **kwargs,
    )
    (here / "refs" / f"{path.stem}.txt").write_text(text, encoding="utf-8")
    print(f"{path.stem}: {len(text)} chars")
print(f"transformers {transformers.__version__}")
