"""Sphinx extension for the book's pages: two fixes for console errors of the Jupyter Book 1.x theme stack.

* sphinx-thebe registers its inline configuration script twice, and browsers then report
  ``Identifier 'THEBE_JS_URL' has already been declared``: repeated scripts are dropped per page.
* pydata-sphinx-theme logs ``Got invalid theme mode`` on a reader's first visit when no default
  mode is configured: the default is set to ``auto`` (follow the reader's system setting).
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(script), tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _default_mode(app, config):
    config.html_theme_options.setdefault("default_mode", "auto")


def setup(app):
    app.connect("config-inited", _default_mode)
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
