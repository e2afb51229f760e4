"""Everything that decides or predicts: the policy protocol, baseline policies, forecasters and RL envs and agents."""
