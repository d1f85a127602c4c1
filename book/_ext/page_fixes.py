"""Sphinx extension for the book's pages: fixes for the Jupyter Book 1.x theme stack.

* Launch buttons (Binder, Colab) of a chapter open its source notebook (``notebooks/<chapter>.ipynb``), not the
  executed copy under ``book/_generated/`` that exists only in a build; run pages of the appendix get none.

* sphinx-thebe registers its inline configuration script twice, and browsers then report
  ``Identifier 'THEBE_JS_URL' has already been declared``: repeated scripts are dropped per page.
* pydata-sphinx-theme logs ``Got invalid theme mode`` on a reader's first visit when no default
  mode is set: the page's default mode becomes ``auto`` (follow the reader's system setting).
"""


import re

EXECUTED_COPY = re.compile(r"book/_generated/[^/]+/([A-Za-z0-9_]+)\.ipynb")


def _launch_sources(app, pagename, templatename, context, doctree):
    if not pagename.startswith("book/_generated/"):
        return
    for group in context.get("header_buttons", []):
        buttons = group.get("buttons") if isinstance(group, dict) else None
        if not isinstance(buttons, list):
            continue
        kept = []
        for button in buttons:
            url = str(button.get("url", ""))
            if url.startswith("http") and "book/_generated/" in url:
                if "/runs/" in pagename:
                    continue  # a run page has no notebook of its own in the repository
                button["url"] = EXECUTED_COPY.sub(r"notebooks/\1.ipynb", url)
            kept.append(button)
        buttons[:] = kept
    context["header_buttons"] = [g for g in context.get("header_buttons", [])
                                 if not (isinstance(g, dict) and g.get("buttons") == [])]


def _page_context(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})  # the same script may be registered twice (filename None and "")
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _page_context, priority=100)  # before handlers that return a template
    app.connect("html-page-context", _launch_sources, priority=510)  # after the theme adds its launch buttons
    return {"parallel_read_safe": True, "parallel_write_safe": True}
