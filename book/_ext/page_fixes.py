"""Sphinx extension for the book's pages: two fixes for console errors of the Jupyter Book 1.x theme stack.

* sphinx-thebe registers its inline configuration script twice, and browsers then report
  ``Identifier 'THEBE_JS_URL' has already been declared``: repeated scripts are dropped per page.
* pydata-sphinx-theme logs ``Got invalid theme mode`` on a reader's first visit when no default
  mode is set: the page's default mode becomes ``auto`` (follow the reader's system setting).
"""


def _page_context(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})  # the same script may be registered twice (filename None and "")
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _page_context, priority=100)  # before handlers that return a template
    return {"parallel_read_safe": True, "parallel_write_safe": True}
