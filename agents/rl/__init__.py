"""RL training on the twin with RLlib (new API stack): algorithm configs, the SKU-shared module, checkpoints
and trained policies."""
