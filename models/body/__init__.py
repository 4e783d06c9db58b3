"""Human body models: SMPL-family files posed with linear blend skinning, and a built-in demo body."""
