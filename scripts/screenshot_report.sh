#!/usr/bin/env bash
# Render an audit report in headless Chromium (Debian's `chromium` package) and save a PNG, to
# look at the report as a person sees it:  scripts/screenshot_report.sh work/runs/ferg-baselines/report/report.html out.png
set -euo pipefail
report=$(realpath "${1:?usage: $0 REPORT.html [OUT.png]}")
out=${2:-${report%.html}.png}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1280,2400 --screenshot="$(realpath -m "$out")" "file://$report" 2>/dev/null
echo "$out"
