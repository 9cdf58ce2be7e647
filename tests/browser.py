"""Headless Chromium (Debian's `chromium`, scripts/setup.sh --slurm): a page's DOM read by a
script, and screenshots, each under a timeout."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RESULT = re.compile(r'<pre id="probe-result">(.*?)</pre>', re.S)


def require_chromium() -> str:
    if CHROMIUM is None:
        pytest.skip("headless Chromium is missing: apt-get install chromium (scripts/setup.sh --slurm)")
    return CHROMIUM


def _run(args: list[str], profile: Path, timeout: int) -> subprocess.CompletedProcess:
    # --disable-web-security: the probe may read into the report's data: URL frames.
    command = [require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--mute-audio", "--disable-web-security", "--disable-site-isolation-trials",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(["timeout", "-k", "5", str(timeout), *command], capture_output=True,
                          text=True, timeout=timeout + 30)


def _append(html: str, script: str) -> str:
    """The page with `script` run last (before its own closing body tag, not one quoted inside it)."""
    head, tag, tail = html.rpartition("</body>")
    assert tag, "the page has no </body>"
    return f"{head}<script>\n{script}\n</script>\n{tag}{tail}"


def probe(page: Path, script: str, size: tuple[int, int], tmp: Path, budget_ms: int = 15000,
          timeout: int = 180):
    """Load a copy of `page` with `script` appended, at the window `size`; the script's
    `report(value)` puts JSON in the DOM, which --dump-dom prints and this returns."""
    copy = tmp / f"probe_{page.stem}_{size[0]}.html"
    text = page.read_text()
    helper = ("function report(value) { const pre = document.createElement('pre'); "
              "pre.id = 'probe-result'; pre.textContent = JSON.stringify(value); "
              "document.body.appendChild(pre); }\n")
    copy.write_text(_append(text, helper + script))
    done = _run([f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}",
                 "--dump-dom", copy.as_uri()], tmp / "chromium-profile", timeout)
    found = RESULT.search(done.stdout)
    assert found, f"the probe reported nothing (chromium {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def screenshot(page: Path, png: Path, size: tuple[int, int], tmp: Path, script: str = "",
               budget_ms: int = 15000, timeout: int = 180) -> Path:
    """A screenshot of `page` (with `script` appended, e.g. to open a view) at the window `size`."""
    source = page
    if script:
        source = tmp / f"shot_{png.stem}.html"
        source.write_text(_append(page.read_text(), script))
    done = _run([f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}",
                 f"--screenshot={png}", source.as_uri()], tmp / "chromium-profile", timeout)
    assert png.exists() and png.stat().st_size > 1000, f"no screenshot: {done.stderr[-2000:]}"
    return png
