"""The generator: MIMO networks, checkpoint loading, the context-window sampler, identity and scene encoding, canonical repose."""
