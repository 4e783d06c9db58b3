"""Beyond one device, on Ray (an optional dependency, imported only inside the functions that need it):

- ``window_parallel``: one video's context windows spread over several devices (Ray actors, one per
  device), bit-identical to the single-device sampler;
- ``batch``: many videos from a manifest, each job a Ray task on whatever cluster ``ray.init`` reaches
  (``python -m models.distributed.batch`` from the pack root).

Importing the pack, or this package, never needs ``ray``."""
