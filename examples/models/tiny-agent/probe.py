#!/usr/bin/env python3
"""Does a trained model read the question? Test tooling, not part of warden.

Runs a model directory (Hugging Face format, as `warden finetune --full` or
`--write-partial` writes it) in Hugging Face transformers -- a Qwen3
implementation nobody here wrote -- over the first tool-calling conversations
of a `warden synth-data` file and prints, per conversation:

- the loss (nats) of its first assistant turn (the tool call) given its own
  question, and given the next conversation's question instead: a model that
  reads the question does much worse with the wrong one;
- the per-token loss of every assistant token that costs more than 0.3 nats,
  which shows whether the names are copied from the question (a name that is
  copied costs almost nothing).

    pip install torch transformers
    python3 examples/models/tiny-agent/probe.py MODEL_DIR DATA.jsonl [N]

Each assistant turn is rendered as warden trains it: the conversation up to
the turn with the generation prompt, then the turn.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def turn_losses(model, tok, conv, turn, user=None):
    """Per-token losses of assistant message `turn`, with the first user
    message replaced by `user` when given."""
    msgs = [dict(m) for m in conv["messages"]]
    if user is not None:
        first = next(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs[first]["content"] = user
    tools = conv.get("tools")
    prompt = tok.apply_chat_template(
        msgs[:turn], tools=tools, add_generation_prompt=True, tokenize=False
    )
    full = tok.apply_chat_template(msgs[: turn + 1], tools=tools, tokenize=False)
    p = tok(prompt, add_special_tokens=False).input_ids
    ids = tok(full, add_special_tokens=False).input_ids
    if ids[: len(p)] != p:
        raise SystemExit("the turn's rendering does not extend its prompt")
    # Up to the turn's <|im_end|> (the newline after it is not trained).
    end = tok.convert_tokens_to_ids("<|im_end|>")
    stop = next((i + 1 for i in range(len(p), len(ids)) if ids[i] == end), len(ids))
    with torch.no_grad():
        logp = model(torch.tensor([ids[:stop]])).logits[0].log_softmax(-1)
    return [(tok.decode([ids[t]]), -logp[t - 1, ids[t]].item()) for t in range(len(p), stop)]


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    model_dir, data = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    convs = [json.loads(line) for line in open(data)]
    calls = [c for c in convs if any(m.get("tool_calls") for m in c["messages"])][: n + 1]
    own_total = other_total = 0.0
    for k, conv in enumerate(calls[:n]):
        turn = next(i for i, m in enumerate(conv["messages"]) if m.get("tool_calls"))
        question = next(m["content"] for m in conv["messages"] if m["role"] == "user")
        other = next(m["content"] for m in calls[k + 1]["messages"] if m["role"] == "user")
        own = turn_losses(model, tok, conv, turn)
        swapped = turn_losses(model, tok, conv, turn, user=other)
        a, b = sum(l for _, l in own), sum(l for _, l in swapped)
        own_total, other_total = own_total + a, other_total + b
        print(f"{question!r}: call {a:.1f} nats with its question, {b:.1f} with {other!r}")
        for i, m in enumerate(conv["messages"]):
            if m["role"] == "assistant":
                costly = [f"{t!r} {l:.1f}" for t, l in turn_losses(model, tok, conv, i) if l > 0.3]
                print("   ", " · ".join(costly) or "(every token under 0.3 nats)")
    print(f"all {n}: {own_total:.1f} nats with their questions, {other_total:.1f} swapped")


if __name__ == "__main__":
    main()
