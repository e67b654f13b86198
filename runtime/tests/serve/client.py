"""Test tooling: the official `openai` Python client against a live
`warden serve` (runtime/tests/serve.rs starts the server and runs one
scenario per call). A scenario raises (exit 1) on anything unexpected and
prints what it saw.

    python3 client.py BASE_URL API_KEY SCENARIO
"""

import concurrent.futures
import json
import os
import sys
import time
import urllib.error
import urllib.request

import openai

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = json.load(open(os.path.join(HERE, "tools.json")))
QUESTION = "Find all Django view functions"


def client(base, key, **kw):
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0, **kw)


def raw(base, key, path, body, method="POST", headers=None):
    """A request the client library would never send: (status, JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    h.update(headers or {})
    root = base.rstrip("/").removesuffix("/v1")
    req = urllib.request.Request(root + path, data=data if method == "POST" else None, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def error_shape(status, body, want_status):
    expect(status == want_status, f"status {status}, expected {want_status}: {body}")
    err = json.loads(body)["error"]
    for k in ("message", "type", "param", "code"):
        expect(k in err, f"error lacks {k}: {body}")
    expect(err["message"], f"empty message: {body}")
    return err


def streamed_calls(stream):
    """The calls a stream's tool_calls deltas add up to, by index, and its
    finish_reason."""
    got, finish = {}, None
    for chunk in stream:
        for c2 in chunk.choices:
            for d in c2.delta.tool_calls or []:
                g = got.setdefault(d.index, {"name": "", "arguments": ""})
                g["name"] += d.function.name or ""
                g["arguments"] += d.function.arguments or ""
            finish = c2.finish_reason or finish
    return got, finish


def plain(base, key):
    c = client(base, key)
    models = c.models.list()
    ids = [m.id for m in models.data]
    expect(len(ids) == 1, f"models: {ids}")
    r = c.chat.completions.create(
        model=ids[0], messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0
    )
    ch = r.choices[0]
    expect(r.object == "chat.completion", r)
    expect(ch.message.role == "assistant", r)
    expect(isinstance(ch.message.content, str), r)
    expect(ch.finish_reason in ("stop", "length"), r)
    expect(0 < r.usage.completion_tokens <= 12, r.usage)
    expect(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
    # Greedy is deterministic; streamed text is the same text.
    r2 = c.chat.completions.create(
        model=ids[0], messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0
    )
    expect(r2.choices[0].message.content == ch.message.content, (r2, r))
    # The same conversation again reuses the cached prompt.
    expect(r2.usage.prompt_tokens_details.cached_tokens > 0, r2.usage)
    stream = c.chat.completions.create(
        model=ids[0],
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        expect(chunk.object == "chat.completion.chunk", chunk)
        if chunk.usage is not None:
            usage = chunk.usage
        for c2 in chunk.choices:
            if c2.delta.role:
                roles.append(c2.delta.role)
            text += c2.delta.content or ""
            finish = c2.finish_reason or finish
    expect(roles == ["assistant"], roles)
    expect(text == ch.message.content, f"streamed {text!r} vs {ch.message.content!r}")
    expect(finish == ch.finish_reason, finish)
    expect(usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage)
    # Seeded sampling is reproducible.
    a = c.chat.completions.create(model=ids[0], messages=[{"role": "user", "content": "Hi"}], max_tokens=10, temperature=1, seed=7)
    b = c.chat.completions.create(model=ids[0], messages=[{"role": "user", "content": "Hi"}], max_tokens=10, temperature=1, seed=7)
    expect(a.choices[0].message.content == b.choices[0].message.content, (a, b))
    print("plain ok:", repr(ch.message.content), r.usage)


def tools(base, key):
    """The client's tools go to the model; its call comes back as
    tool_calls; the client answers it and the model writes its reply."""
    c = client(base, key)
    messages = [{"role": "user", "content": QUESTION}]
    r = c.chat.completions.create(model="m", messages=messages, tools=TOOLS, max_tokens=96, temperature=0)
    ch = r.choices[0]
    expect(ch.finish_reason == "tool_calls", r)
    calls = ch.message.tool_calls
    expect(calls and calls[0].type == "function", r)
    call = calls[0]
    expect(call.function.name in {t["function"]["name"] for t in TOOLS}, call)
    args = json.loads(call.function.arguments)
    expect(isinstance(args, dict), call)
    expect(call.id.startswith("call_"), call)
    # Streamed: the same call, as tool_calls deltas.
    stream = c.chat.completions.create(model="m", messages=messages, tools=TOOLS, max_tokens=96, temperature=0, stream=True)
    got, finish = streamed_calls(stream)
    expect(finish == "tool_calls", finish)
    expect(got[0]["name"] == call.function.name and json.loads(got[0]["arguments"]) == args, (got, call))
    # The round trip: the client ran the tool and sends its result back.
    messages.append(ch.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "blog/views.py:12: def post_list(request):\n"})
    r2 = c.chat.completions.create(model="m", messages=messages, tools=TOOLS, max_tokens=96, temperature=0)
    expect(r2.usage.prompt_tokens > r.usage.prompt_tokens, (r2.usage, r.usage))
    # The conversation's prefix stayed in the slot's cache.
    expect(r2.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1, r2.usage)
    # tool_choice none: no tools are shown and no call comes back.
    r3 = c.chat.completions.create(model="m", messages=messages[:1], tools=TOOLS, tool_choice="none", max_tokens=32, temperature=0)
    expect(not r3.choices[0].message.tool_calls and r3.choices[0].finish_reason != "tool_calls", r3)
    print("tools ok:", call.function.name, args, "then", repr(r2.choices[0].message.content)[:80])


def errors(base, key):
    c = client(base, key)
    # Wrong key.
    try:
        client(base, "not-the-key").chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        expect(e.status_code == 401, e)
    s, b = raw(base, "not-the-key", "/v1/models", None, method="GET")
    error_shape(s, b, 401)
    # /health needs no key.
    s, b = raw(base, "", "/health", None, method="GET", headers={"Authorization": ""})
    expect(s == 200 and json.loads(b)["status"] == "ok", b)
    # Malformed and wrong bodies.
    error_shape(*raw(base, key, "/v1/chat/completions", b"{not json"), 400)
    error_shape(*raw(base, key, "/v1/chat/completions", {"messages": "hi"}), 400)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": []}), 400)
    expect(e["param"] == "messages", e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}), 400)
    expect(e["param"] == "messages[0].role", e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]}), 400)
    expect(e["param"] == "tools[0].function.name", e)
    many = [{"type": "function", "function": {"name": f"t{i}"}} for i in range(257)]
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": many}), 400)
    expect(e["param"] == "tools", e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}), 400)
    expect(e["param"] == "stop", e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}), 400)
    expect(e["param"] == "n", e)
    # Too long for the context.
    try:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 10000}])
        raise AssertionError("a prompt longer than the context was accepted")
    except openai.BadRequestError as e:
        expect(e.code == "context_length_exceeded", e)
    # Oversized body (the server runs with --max-body 65536).
    error_shape(*raw(base, key, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 100000}]}), 413)
    # Unknown endpoint, wrong method.
    error_shape(*raw(base, key, "/v1/nothing", {}), 404)
    error_shape(*raw(base, key, "/v1/models", {}), 405)
    # Tokenize and apply-template.
    s, b = raw(base, key, "/tokenize", {"content": "hello world"})
    expect(s == 200 and len(json.loads(b)["tokens"]) >= 2, b)
    s, b = raw(base, key, "/apply-template", {"messages": [{"role": "user", "content": QUESTION}], "tools": TOOLS})
    prompt = json.loads(b)["prompt"]
    expect(s == 200 and QUESTION in prompt and "search_code" in prompt, b)
    # Metrics count what happened.
    s, b = raw(base, key, "/metrics", None, method="GET")
    expect(s == 200 and "warden_requests_total" in b and 'status="401"' in b, b)
    print("errors ok")


def concurrency(base, key):
    """8 clients at once on 2 slots: every request answered, none lost."""
    c = client(base, key, timeout=600)

    def one(i):
        r = c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=24, temperature=0
        )
        return r.choices[0].finish_reason, r.usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    expect(len(results) == 8 and all(n > 0 for _, n in results), results)
    s, b = raw(base, key, "/metrics", None, method="GET")
    line = [l for l in b.splitlines() if l.startswith("warden_requests_total") and "/v1/chat/completions" in l and 'status="200"' in l]
    expect(line and float(line[0].split()[-1]) >= 8, b)
    print("concurrency ok:", results)


def busy(base, key):
    """One slot, no queue: a second request while the first generates is
    refused with 503, and the server serves again afterwards."""
    c = client(base, key, timeout=600)
    # Streamed, so that its first chunk says it is admitted and generating
    # (however short what it writes), then the second request at once.
    first = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Tell a long story."}],
                                      max_tokens=400, temperature=0, stream=True)
    chunks = iter(first)
    next(chunks)
    try:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=4)
        refused = None
    except openai.APIStatusError as e:
        refused = e
    for _ in chunks:
        pass
    expect(refused is not None and refused.status_code == 503, refused)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=4)
    expect(r.choices[0].message is not None, r)
    print("busy ok")


def disconnect(base, key):
    """A streamed request whose client goes away stops generating: the slot
    is free long before max_tokens could have been written."""
    c = client(base, key, timeout=600)
    stream = c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell a long story."}], max_tokens=4000, temperature=1, seed=1, stream=True
    )
    for _ in zip(range(3), stream):
        pass
    stream.close()
    started = time.time()
    while True:
        s, b = raw(base, key, "/metrics", None, method="GET")
        busy = [l for l in b.splitlines() if l.startswith("warden_slots_busy")]
        if busy and float(busy[0].split()[-1]) == 0:
            break
        expect(time.time() - started < 20, f"the slot is still busy 20 s after the client went away:\n{b}")
        time.sleep(0.1)
    toks = [l for l in b.splitlines() if l.startswith("warden_completion_tokens_total")]
    print("disconnect ok: slot free after", round(time.time() - started, 2), "s;", toks)


# Tools whose arguments are bounded (enums, lengths, ranges, no extra keys),
# so that even a model with random weights finishes a call well within
# max_tokens once the grammar holds it to the schema.
BOUNDED = [
    {"type": "function", "function": {"name": "read_file", "description": "Read a file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string", "maxLength": 16}, "start_line": {"type": "integer", "minimum": 1, "maximum": 500}},
        "required": ["path"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "set_mode", "description": "Switch the mode", "parameters": {
        "type": "object", "properties": {"mode": {"enum": ["fast", "slow", "off"]}, "verbose": {"type": "boolean"}},
        "required": ["mode", "verbose"], "additionalProperties": False}}},
]


def constrained(base, key):
    """tool_choice required / named / none and response_format json_schema
    on a model with random weights: every call parses and fits its schema,
    a named tool is the one called, none calls nothing, JSON output fits."""
    import jsonschema

    c = client(base, key, timeout=600)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in BOUNDED}
    no_think = {"chat_template_kwargs": {"enable_thinking": False}}
    msgs = [{"role": "user", "content": "Do something with the files."}]

    def check_calls(r, only=None):
        ch = r.choices[0]
        expect(ch.finish_reason == "tool_calls", r)
        expect(ch.message.tool_calls, r)
        for call in ch.message.tool_calls:
            expect(call.function.name in schemas, call)
            expect(only is None or call.function.name == only, (only, call))
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
        return [(x.function.name, json.loads(x.function.arguments)) for x in ch.message.tool_calls]

    seen = []
    for seed in range(3):
        r = c.chat.completions.create(model="m", messages=msgs, tools=BOUNDED, tool_choice="required",
                                      max_tokens=200, temperature=1, seed=seed, extra_body=no_think)
        seen.append(check_calls(r))
        r = c.chat.completions.create(model="m", messages=msgs, tools=BOUNDED, max_tokens=200, temperature=1, seed=seed,
                                      tool_choice={"type": "function", "function": {"name": "set_mode"}}, extra_body=no_think,
                                      parallel_tool_calls=False)
        calls = check_calls(r, only="set_mode")
        expect(len(calls) == 1, calls)
    # Greedy too, and streamed: the deltas add up to a valid call.
    stream = c.chat.completions.create(model="m", messages=msgs, tools=BOUNDED, tool_choice="required", max_tokens=200,
                                       temperature=0, stream=True, extra_body=no_think)
    got, finish = streamed_calls(stream)
    expect(finish == "tool_calls" and got, (finish, got))
    for g in got.values():
        jsonschema.validate(json.loads(g["arguments"]), schemas[g["name"]])
    # none: no call, whatever the weights.
    r = c.chat.completions.create(model="m", messages=msgs, tools=BOUNDED, tool_choice="none", max_tokens=40,
                                  temperature=1, seed=1, extra_body=no_think)
    expect(not r.choices[0].message.tool_calls and r.choices[0].finish_reason != "tool_calls", r)
    # response_format json_schema: the content is JSON that fits.
    person = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
              "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}}, "required": ["name", "age", "tags"], "additionalProperties": False}
    for seed in range(3):
        r = c.chat.completions.create(model="m", messages=msgs, max_tokens=200, temperature=1, seed=seed, extra_body=no_think,
                                      response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": person}})
        expect(r.choices[0].finish_reason == "stop", r)
        jsonschema.validate(json.loads(r.choices[0].message.content), person)
    # A schema the grammar engine cannot compile is the request's fault.
    bad = [{"type": "function", "function": {"name": "x", "parameters": {"type": "object", "properties": {"p": {"type": "string", "pattern": "(unclosed"}}, "required": ["p"]}}}]
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": msgs, "tools": bad, "tool_choice": "required"}), 400)
    # A named tool that is not offered, and two shapes asked at once.
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": msgs, "tools": BOUNDED, "tool_choice": {"type": "function", "function": {"name": "nope"}}}), 400)
    expect(e["param"] == "tool_choice", e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": msgs, "tools": BOUNDED, "tool_choice": "required", "response_format": {"type": "json_object"}}), 400)
    expect(e["param"] == "response_format", e)
    # The message-count bound, exactly: 4,097 are refused as too many,
    # 4,096 get as far as the context check.
    many = [{"role": "user", "content": "x"}] * 4097
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": many}), 400)
    expect(e["param"] == "messages" and "4096" in e["message"], e)
    e = error_shape(*raw(base, key, "/v1/chat/completions", {"messages": many[:4096]}), 400)
    expect(e["code"] == "context_length_exceeded", e)
    print("constrained ok:", seen[:3])


WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def agent_replay(base, key):
    """Agent mode on a recording (runtime/tests/serve/agent-replay.jsonl):
    a denied call and an allowed one run server-side and are reported in
    warden.tool_calls; the client's own tool comes back as tool_calls; the
    client's result continues the same conversation and log."""
    c = client(base, key)
    messages = [{"role": "user", "content": "Where is the Post model, and what is the weather in Oslo?"}]
    r = c.chat.completions.create(model="m", messages=messages, tools=WEATHER)
    w = r.model_extra["warden"]
    calls = w["tool_calls"]
    expect([x["name"] for x in calls] == ["read_file", "search_code"], calls)
    denied, ok = calls
    # The policy lets read_file run; the sandbox refuses a path outside its mounts.
    expect(denied["outcome"] == "denied" and denied["result"].startswith("error: denied: "), denied)
    expect(ok["decision"] == "allowed" and ok["outcome"] == "ok" and "class Post" in ok["result"], ok)
    ch = r.choices[0]
    expect(ch.finish_reason == "tool_calls", r)
    expect([t.function.name for t in ch.message.tool_calls] == ["get_weather"], r)
    expect(json.loads(ch.message.tool_calls[0].function.arguments) == {"city": "Oslo"}, r)
    log = w["log"]
    expect(os.path.exists(log), log)
    # The client runs its tool and sends the result: same conversation.
    messages.append(ch.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": ch.message.tool_calls[0].id, "content": "sunny, 12 C"})
    r2 = c.chat.completions.create(model="m", messages=messages, tools=WEATHER)
    expect(r2.choices[0].finish_reason == "stop" and "sunny" in r2.choices[0].message.content, r2)
    expect(r2.model_extra["warden"]["log"] == log and r2.model_extra["warden"]["tool_calls"] == [], r2.model_extra)
    # Streamed, a new conversation: text deltas, and warden on the last chunk.
    stream = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello."}], stream=True)
    text, extra = "", None
    for chunk in stream:
        for ch in chunk.choices:
            text += ch.delta.content or ""
        extra = (chunk.model_extra or {}).get("warden") or extra
    expect(text == "Hello there.", text)
    expect(extra and extra["log"] != log, extra)
    print("agent_replay ok:", log, extra["log"])


def agent_live(base, key):
    """Agent mode on the tiny agent: its call of a policy tool runs here."""
    c = client(base, key, timeout=600)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}], max_tokens=96, temperature=0)
    w = r.model_extra["warden"]
    expect(w["tool_calls"], r)
    first = w["tool_calls"][0]
    expect(first["name"] in {"search_code", "read_file", "list_dir"} and first["decision"] == "allowed", first)
    expect(first["outcome"] == "ok", first)
    expect(os.path.exists(w["log"]), w)
    print("agent_live ok:", first["name"], first["arguments"], "->", repr(r.choices[0].message.content)[:60])


def agent_evict(base, key):
    """8 conversations at once (--parallel 2), then 57 more one by one: the
    server keeps 64; the least recently used one ends (its log says
    evicted)."""
    c = client(base, key, timeout=600)

    def ask(i):
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"Question {i}"}])
        return r.model_extra["warden"]["log"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        logs = list(pool.map(ask, range(8)))
    logs += [ask(i) for i in range(8, 65)]
    expect(len(set(logs)) == 65, logs)
    print("agent_evict ok")


def completions(base, key):
    """Raw-prompt completion as the OpenAI SDK asks for it (whole and
    streamed, the same greedy text), and llama-server's /props and
    /completion."""
    c = client(base, key, timeout=600)
    s, b = raw(base, key, "/props", None, method="GET")
    expect(s == 200, b)
    props = json.loads(b)
    expect("<|im_start|>" in props["chat_template"] and props["default_generation_settings"]["n_ctx"] > 0, props)
    prompt = "<|im_start|>user\nList the files.<|im_end|>\n<|im_start|>assistant\n"
    whole = c.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, seed=1)
    text = whole.choices[0].text
    expect(whole.object == "text_completion" and text, whole)
    expect(whole.usage.prompt_tokens > 0 and 0 < whole.usage.completion_tokens <= 12, whole.usage)
    pieces = []
    for ch in c.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, seed=1, stream=True,
                                   stream_options={"include_usage": True}):
        if ch.choices:
            pieces.append(ch.choices[0].text)
    expect("".join(pieces) == text, (pieces, text))
    # The second asks for what the first cached: llama-server's shape says so.
    s, b = raw(base, key, "/completion", {"prompt": prompt, "n_predict": 12, "temperature": 0})
    expect(s == 200, b)
    native = json.loads(b)
    expect(native["content"] == text and native["stop"] is True and native["tokens_cached"] > 0, native)
    # Several prompts, more tokens than the context holds, and none at all
    # are refused, OpenAI-shaped.
    s, b = raw(base, key, "/v1/completions", {"prompt": ["a", "b"], "max_tokens": 2})
    error_shape(s, b, 400)
    s, b = raw(base, key, "/completion", {"prompt": prompt, "n_predict": 10**9})
    expect("n_predict" in error_shape(s, b, 400)["message"], b)
    s, b = raw(base, key, "/v1/completions", {"prompt": prompt, "max_tokens": 0})
    error_shape(s, b, 400)
    print("completions ok:", repr(text))


if __name__ == "__main__":
    base, key, scenario = sys.argv[1:4]
    globals()[scenario](base, key)
