"""Suite-wide settings."""

import torch

# The tiny models are too small to gain from intra-op threads, and on a 2-core machine two threads
# per test process fight over the cores (generate became 30-100x slower under load).
torch.set_num_threads(1)
