"""The report of the real tiny grid (3 agents, 1 seed, each cell filmed at frames 0, 1000 and
2000) in headless Chromium: the behaviour videos play inside it, and its landing page shows the
claims and the main figure with nothing drawn over them."""
import os
import shutil
from pathlib import Path

import pytest

from browser import probe, require_chromium, screenshot


pytestmark = pytest.mark.slow

WIDTHS = (1400, 1920)
HEIGHT = 1000

WAIT = "const wait = ms => new Promise(done => setTimeout(done, ms));\n"
# Opens the behaviour page as the report's own view button does (an iframe of its data: URL).
OPEN_BEHAVIOUR = WAIT + """
async function openBehaviour() {
  for (let i = 0; i < 200 && typeof app === "undefined"; i++) await wait(50);
  const path = Object.keys(results).find(p => p.endsWith("behaviour.html"));
  new ButtonViewManager(app).handleSelectedResult(path).props.onClick();
  return path;
}
"""
READ_VIDEOS = OPEN_BEHAVIOUR + """
(async () => {
  const path = await openBehaviour();
  let doc = null;
  for (let i = 0; i < 200; i++) {
    const frame = document.querySelector("iframe");
    doc = frame && frame.contentDocument;
    if (doc && doc.readyState === "complete" && doc.querySelector("figure")) break;  // every video parsed
    await wait(50);
  }
  const videos = [...doc.querySelectorAll("video")];
  await Promise.all(videos.map(v => v.readyState >= 1 || v.error ? null : new Promise(done => {
    v.addEventListener("loadedmetadata", done); v.addEventListener("error", done); setTimeout(done, 5000);
  })));
  report({path, figures: doc.querySelectorAll("figure").length, videos: videos.map(v => ({
    duration: v.duration, error: v.error ? v.error.code : null, width: v.videoWidth,
    caption: v.closest("figure").querySelector("figcaption").textContent}))});
})().catch(err => report({failed: String(err)}));
"""
# Where each of the claims table and the main figure lies, and what is on top at points across it.
READ_LANDING = WAIT + """
const describe = el => el ? el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
  (typeof el.className === "string" && el.className ? "." + el.className.split(" ").join(".") : "") : "nothing";
const box = el => { const r = el.getBoundingClientRect();
  return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
async function examine(el, others) {
  el.scrollIntoView({block: "start"});
  await wait(200);
  const first = el.getBoundingClientRect();
  const seen = {top_after_scrolling: first.top, box: box(el), width: innerWidth, covered: [], overlaps: []};
  for (const [name, other] of Object.entries(others)) {
    const a = el.getBoundingClientRect(), b = other.getBoundingClientRect();
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) seen.overlaps.push(name);
  }
  const scroller = el.closest(".overflow-auto");
  for (let page = 0; page < 30; page++) {
    const r = el.getBoundingClientRect();
    const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, innerHeight);
    const left = Math.max(r.left, 0), right = Math.min(r.right, innerWidth);
    for (let i = 1; i < 12; i++) for (let j = 1; j < 12; j++) {
      const x = left + (right - left) * i / 12, y = top + (bottom - top) * j / 12;
      const hit = document.elementFromPoint(x, y);
      if (!(hit === el || el.contains(hit))) seen.covered.push(describe(hit) + " at " + Math.round(x) + "," + Math.round(y));
    }
    if (r.bottom <= innerHeight || !scroller) break;
    scroller.scrollBy(0, innerHeight * 0.8);
    await wait(100);
  }
  return seen;
}
(async () => {
  let table, figure, graph;
  for (let i = 0; i < 100; i++) {
    table = document.querySelector("div.prose table");
    figure = document.querySelector("div.prose img.landing-figure");
    graph = document.querySelector("#rulegraph canvas, #rulegraph svg");
    if (table && figure && figure.complete && figure.naturalWidth > 0 && graph) break;
    await wait(50);
  }
  const navbar = document.querySelector("#app > div > div");
  const others = {"job graph": document.querySelector("#rulegraph"), "menu": navbar};
  report({figure_loaded: !!figure && figure.naturalWidth > 0, graph: !!graph,
          claims: table ? await examine(table, others) : null,
          figure: figure ? await examine(figure, others) : null});
})().catch(err => report({failed: String(err)}));
"""


@pytest.fixture(scope="module")
def report_html(tiny_grid):
    require_chromium()
    return tiny_grid / "results" / "report.html"


def _keep(png: Path) -> None:
    """Screenshots are also copied to $DRM_SCREENSHOTS when it names a folder."""
    folder = os.environ.get("DRM_SCREENSHOTS")
    if folder:
        shutil.copy(png, Path(folder) / png.name)


def test_the_behaviour_videos_play_inside_the_report(report_html, tmp_path):
    seen = probe(report_html, READ_VIDEOS, (1400, HEIGHT), tmp_path)
    assert "failed" not in seen, seen
    assert seen["path"] == "results/videos/behaviour.html"
    assert seen["figures"] == 3 and len(seen["videos"]) == 3, "one per agent on the one task"
    for shown in seen["videos"]:
        assert shown["error"] is None and shown["duration"] > 0, shown
        assert shown["width"] == 256
        assert "(median of 1)" in shown["caption"] and "frame 2,000, return" in shown["caption"]
    _keep(screenshot(report_html, tmp_path / "watch_report_behaviour.png", (1400, HEIGHT), tmp_path,
                     script=OPEN_BEHAVIOUR + "openBehaviour();"))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_landing_page_shows_the_claims_and_the_main_figure_uncovered(report_html, tmp_path, width):
    seen = probe(report_html, READ_LANDING, (width, HEIGHT), tmp_path)
    assert "failed" not in seen, seen
    assert seen["figure_loaded"] and seen["graph"], seen
    for name in ("claims", "figure"):
        part = seen[name]
        assert part["top_after_scrolling"] > -1, f"{name}: its top cannot be scrolled into view: {part}"
        assert 0 <= part["box"]["left"] and part["box"]["right"] <= part["width"], f"{name} cut off: {part}"
        assert part["overlaps"] == [], f"{name} overlaps {part['overlaps']}: {part['box']}"
        assert part["covered"] == [], f"{name}: drawn over at {part['covered'][:5]}"
    _keep(screenshot(report_html, tmp_path / f"watch_report_landing_{width}.png", (width, HEIGHT), tmp_path))
