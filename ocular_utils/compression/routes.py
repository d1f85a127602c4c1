"""The registry of compression routes that end on a phone: one or more steps, the last one int8.

A :class:`Route` names the models it starts from (``parents``: the base, the channel-pruned models
at the headline ratio, the unstructured models at the headline ratio, the distilled students, or
students that were channel-pruned and fine-tuned) and what the quantization unit does with them.
Adding a route is one :func:`register_route` call; every registered name is valid in a profile's
``quantization.routes``, becomes units of the grid (one per parent) and a row of the phone chapter.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.registry import Registry

# What a route starts from (the planner maps each to run units of the grid).
PARENTS = {
    "base": "the fp32 ResNet50 base",
    "channel": "every channel-pruned model at the headline ratio",
    "unstructured": "the paper's method (layer_weight) at the headline ratio",
    "student": "every student distilled with the route loss",
    "student_channel": "every such student, channel-pruned and fine-tuned at the matched budget",
}


@dataclass(frozen=True)
class Route:
    """One registered compression route: its steps (for display), the parents it starts from, and storage."""

    name: str
    steps: tuple[str, ...]
    parents: str
    sparse_size: bool = False  # also report the int8 weights stored sparse (size only: dense kernels run it)
    description: str = ""


ROUTES: Registry[Route] = Registry("compression route")


def register_route(route: Route) -> Route:
    """Add ``route`` to :data:`ROUTES` (a name may be registered once; parents must be known)."""
    if route.parents not in PARENTS:
        raise ValueError(f"route {route.name!r}: unknown parents {route.parents!r}; expected one of {list(PARENTS)}")
    return ROUTES.register(route.name, route)


def get_route(name: str) -> Route:
    """The registered route ``name``; a clear error listing the known ones otherwise."""
    return ROUTES.lookup(name)


register_route(Route("int8", ("int8",), "base", description="post-training static int8 of the base"))
register_route(Route("channel+int8", ("channel pruning", "fine-tuning", "int8"), "channel",
                     description="channel-pruned ResNet50, then int8"))
register_route(Route("unstructured+int8", ("unstructured pruning", "fine-tuning", "int8"), "unstructured",
                     sparse_size=True, description="unstructured-pruned ResNet50, then int8 (stored sparse: size "
                     "only, dense kernels give no speed-up)"))
register_route(Route("student+int8", ("distillation", "int8"), "student", description="distilled student, then int8"))
register_route(Route("student+channel+int8", ("distillation", "channel pruning", "fine-tuning", "int8"),
                     "student_channel", description="distilled student, channel-pruned and fine-tuned, then int8"))
