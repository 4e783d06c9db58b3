"""Human body models: SMPL-family files posed with linear blend skinning, and a built-in demo body."""

from .demo import demo_body
from .model import BodyModel, load_body

__all__ = ["BodyModel", "demo_body", "load_body"]
