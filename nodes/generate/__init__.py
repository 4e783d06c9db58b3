"""Generator nodes: model loading, identity/scene encoding, sampling, canonical repose."""
