"""Render `xtuner report`'s report.html in headless Chromium and save a full-page screenshot, to check by eye that
the self-contained page reads well (tables, embedded plots).

    .venv/bin/python bench/report_html.py report-out/demo/report.html [--out shot.png] [--width 1280]

Needs a Chromium binary (`chromium`, `chromium-browser` or `google-chrome` on PATH; Debian: apt-get install -y
chromium). The page is opened as a file:// URL with networking off (--no-proxy-server, a blackhole proxy), so it
also checks that nothing outside the file is needed. Prints the screenshot's path and size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: no Chromium on PATH (Debian/Ubuntu: apt-get install -y chromium)")


def page_height(html: Path) -> int:
    """A generous height for the whole page: Chromium's --screenshot takes the window size only."""
    text = html.read_text()
    return min(16000, 900 + 34 * text.count("<tr") + 420 * text.count("<img"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, help="PNG path (default: next to the page, report_screenshot.png)")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    if not args.html.is_file():
        sys.exit(f"error: {args.html} not found")
    out = (args.out or args.html.with_name("report_screenshot.png")).resolve()
    height = page_height(args.html)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--window-size={args.width},{height}", f"--screenshot={out}", args.html.resolve().as_uri()]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.is_file():
        sys.exit(f"error: chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    print(f"{out} ({args.width}x{height}, {out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
