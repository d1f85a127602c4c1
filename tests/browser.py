"""Load a built book's pages in headless Chromium (Debian's ``chromium``, driven by Playwright) and check them."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Run in the page: images, elements wider than the text column outside a scroll box, visible code inputs, links.
PAGE_CHECKS = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = article.getBoundingClientRect();
  const scrolls = (el) => {
    for (let node = el.parentElement; node && node !== article.parentElement; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (['auto', 'scroll', 'hidden'].includes(style.overflowX)) return true;
    }
    return false;
  };
  const wide = [];
  for (const el of article.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > column.right + 2 && !scrolls(el)) {
      wide.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${Math.round(box.width)}px`);
    }
  }
  const images = [...document.images].map(img => ({src: img.currentSrc || img.src,
                                                   ok: img.complete && img.naturalWidth > 0}));
  const code = [...article.querySelectorAll('.cell_input')].filter(el => {
    if (el.closest('details:not([open])')) return false;  // collapsed behind a toggle
    return el.checkVisibility ? el.checkVisibility({visibilityProperty: true}) : el.getClientRects().length > 0;
  }).length;
  const links = [...article.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const tables = [...article.querySelectorAll('.cell_output table')];
  const indexed = tables.filter(t => t.querySelector('tbody th')).length;  // a row-header (index) column
  const raw = tables.flatMap(t => [...t.querySelectorAll('td')].map(td => td.textContent.trim()))
    .filter(text => ['None', 'NaN', 'nan', '<NA>', 'NaT'].includes(text));
  return {columnWidth: Math.round(column.width), wide: wide.slice(0, 5), images, code, links,
          tables: tables.length, indexed, raw: raw.slice(0, 5)};
}"""


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@dataclass
class BookCheck:
    """What the browser saw: pages and images checked, and every problem found."""

    pages: int = 0
    images: int = 0
    tables: int = 0
    problems: list[str] = field(default_factory=list)


def _internal_target(page: Path, href: str) -> Path | None:
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https", "mailto", "data", "javascript") or not parsed.path:
        return None
    return (page.parent / unquote(parsed.path)).resolve()


def check_book_in_browser(html: Path, chromium: str, width: int = 1280, code_free=lambda page: True) -> BookCheck:
    """Open every page of the book at ``width`` px; ``code_free(relative_path)`` says where no code may show."""
    from playwright.sync_api import sync_playwright

    result = BookCheck()
    html = Path(html).resolve()
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
                   and p.name not in ("genindex.html", "search.html"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []
            tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            tab.on("pageerror", lambda error: errors.append(str(error)))
            for page in pages:
                name = str(page.relative_to(html))
                redirect = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', page.read_text(), re.I)
                if redirect:  # the root index only forwards to the first page
                    if not (page.parent / redirect.group(1)).exists():
                        result.problems.append(f"{name}: redirects to a missing page {redirect.group(1)}")
                    continue
                errors.clear()
                tab.goto(page.as_uri(), wait_until="load")
                tab.evaluate("() => document.querySelectorAll('img').forEach(img => img.loading = 'eager')")
                tab.wait_for_function("() => [...document.images].every(img => img.complete)", timeout=15000)
                seen = tab.evaluate(PAGE_CHECKS)
                result.pages += 1
                result.images += len(seen["images"])
                result.problems += [f"{name}: console error: {e}" for e in errors]
                result.problems += [f"{name}: image not decoded: {i['src']}" for i in seen["images"] if not i["ok"]]
                result.problems += [f"{name}: wider than the {seen['columnWidth']}px column outside a scroll box: {w}"
                                    for w in seen["wide"]]
                if code_free(name) and seen["code"]:
                    result.problems.append(f"{name}: {seen['code']} code inputs visible by default")
                if code_free(name):  # a chapter: its tables come through ocular_utils.report.display
                    result.tables += seen["tables"]
                    if seen["indexed"]:
                        result.problems.append(f"{name}: {seen['indexed']} tables with an index column")
                    result.problems += [f"{name}: a table cell reads {text!r}" for text in seen["raw"]]
                for href in seen["links"]:
                    target = _internal_target(page, href)
                    if target is not None and not target.exists():
                        result.problems.append(f"{name}: broken link {href}")
        finally:
            browser.close()
    return result
