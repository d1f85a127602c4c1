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
