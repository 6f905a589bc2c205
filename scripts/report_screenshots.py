"""Screenshots of each section of a run's report, for the README: ``kubetune report`` of the run folder, then
headless Chromium at 1280x900 once per section (the page's ``?section=ID`` shows that section alone).

    python scripts/report_screenshots.py RUN_FOLDER [--out docs/report]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kubetune.cli import main as kubetune

SECTIONS = ["history", "parallel", "importance", "slices", "timeline", "curves", "table", "manifest"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (kubetune run --out)")
    parser.add_argument("--out", type=Path, default=Path("docs/report"))
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("needs headless Chromium: make browser", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        if kubetune(["report", str(args.run), "-o", str(page)]) != 0:
            return 1
        for section in SECTIONS:
            shot = (args.out / f"{section}.png").resolve()
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1280,900", f"--screenshot={shot}", f"{page.as_uri()}?section={section}"],
                           check=True, capture_output=True, timeout=120)
            print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
