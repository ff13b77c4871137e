"""The demo world: a synthetic e-commerce business with dirty data and known ground truth."""

from headwater.demo.world import WorldStats, generate_world

__all__ = ["WorldStats", "generate_world"]
