"""The stable public API: every top-level name resolves, is documented, and every module is listed once."""
import importlib
import pkgutil

import ocular_utils


def test_public_names_resolve_with_docstrings():
    required = {"eer", "tar_at_far", "build_model", "prune", "compression_ratio", "METHODS", "kd_loss",
                "load_dataset", "load_profile"}
    assert required <= set(ocular_utils.__all__)
    for name in ocular_utils.__all__:
        value = getattr(ocular_utils, name)
        if name != "METHODS":
            assert (value.__doc__ or "").strip(), f"ocular_utils.{name} has no docstring"
    assert {"layer_weight", "channel_taylor"} <= set(ocular_utils.METHODS)


def test_every_module_is_listed_in_the_package_docstring_and_has_one():
    listed = ocular_utils.__doc__
    for info in pkgutil.walk_packages(ocular_utils.__path__, "ocular_utils."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        assert (module.__doc__ or "").strip(), f"{info.name} has no docstring"
        short = info.name.removeprefix("ocular_utils.")
        if not info.ispkg and "." in short:
            assert f"``{short}``" in listed, f"{short} is missing from the package docstring"


STAGES = ["core", "data", "models", "verification", "training", "compression", "deployment", "report", "runner"]


def test_no_import_runs_from_a_lower_stage_to_a_higher_one():
    """The data flow, bottom to top; every import (lazy ones included) points down or within its stage."""
    import ast
    from pathlib import Path

    root = Path(ocular_utils.__file__).parent
    assert sorted(STAGES) == sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    upward = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        stage = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 2 and node.module:
                target = node.module.split(".")[0]
            elif node.level == 0 and (node.module or "").startswith("ocular_utils."):
                target = node.module.split(".")[1]
            else:
                continue
            if target in STAGES and STAGES.index(target) > STAGES.index(stage):
                upward.append(f"{path.relative_to(root)}:{node.lineno} imports {target}")
    assert not upward, "imports from a lower stage to a higher one:\n" + "\n".join(upward)


def test_every_benchmark_script_imports():
    """A benchmark is run by hand, rarely: a name it imports that the package no longer has must fail here."""
    import importlib.util
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
    assert len(scripts) >= 10
    for script in scripts:
        spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # runs the imports and definitions, not main()
        assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
