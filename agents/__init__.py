"""Everything that decides or predicts: baseline policies now; forecasters and RL agents later."""
