#!/usr/bin/env bash
# Prompt lookup on a turn that quotes its context back: a ~3,000-token
# source file in the conversation (as a read_file result would put it), then
# "quote function X", the assistant's turn opened with the quote's first
# line (ChatML, as SmolLM2 and Qwen render it). Plain and lookup decoding,
# greedy, --stop at the closing fence, interleaved
# (plain, lookup, plain, lookup, …); prints each run's decode speed and
# whether every run's text is the same.
#
#   runtime/benches/lookup_quote.sh MODEL [REPEATS] [THREADS] [-- EXTRA WARDEN ARGS]
#
# e.g. runtime/benches/lookup_quote.sh ~/.cache/warden/test-models/SmolLM2-135M-Instruct.Q4_1.gguf 3 2
# Release build: target/release/warden (or $WARDEN).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:?usage: lookup_quote.sh MODEL [REPEATS] [THREADS] [-- EXTRA ARGS]}
REPEATS=${2:-3}
THREADS=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
W=${WARDEN:-target/release/warden}
FILE=${QUOTE_FILE:-runtime/tests/llama_cpp/reference.py}
FUNC=${QUOTE_FUNCTION:-greedy}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# SmolLM2's ChatML, rendered here so that the assistant's turn can start
# the quote (as a model that has decided to quote does): what follows is
# the model copying from its context, which is where lookup drafts.
PROMPT="<|im_start|>user
Here is the file $FILE:

$(cat "$FILE")

Quote the function \`$FUNC\` from this file exactly.<|im_end|>
<|im_start|>assistant
Here is \`$FUNC\`, exactly as in the file:

\`\`\`python
def $FUNC("

for r in $(seq 1 "$REPEATS"); do
  for mode in off lookup; do
    "$W" generate --model "$MODEL" --prompt "$PROMPT" --max-tokens 256 --stop '```' \
      --speculative "$mode" --threads "$THREADS" --json "$@" > "$OUT/$mode-$r.json"
  done
done

python3 - "$OUT" "$REPEATS" <<'PY'
import json, statistics, sys
out, repeats = sys.argv[1], int(sys.argv[2])
runs = {m: [json.load(open(f"{out}/{m}-{r}.json")) for r in range(1, repeats + 1)] for m in ("off", "lookup")}
texts = {j["text"] for m in runs for j in runs[m]}
for m, js in runs.items():
    t = js[0]["timings"]
    speeds = [j["timings"]["decode_tok_s"] for j in js]
    extra = ""
    if m == "lookup":
        extra = f", drafted {t.get('drafted_tokens')}, accepted {t.get('accepted_tokens')}"
    print(f"{m:>6}: decode tok/s {', '.join(f'{s:.1f}' for s in speeds)} (median {statistics.median(speeds):.1f}); "
          f"prompt {t.get('prefill_tokens')} tokens, {len(js[0]['tokens'])} generated{extra}")
med = {m: statistics.median(j["timings"]["decode_tok_s"] for j in js) for m, js in runs.items()}
print(f"lookup speed-up: {med['lookup'] / med['off']:.2f}x; greedy texts identical across all runs: {len(texts) == 1}")
print("--- the quoted text ---")
print(runs["off"][0]["text"])
PY
