"""ART: fine-tune a frozen multimodal LLM by optimising only the pixels of one input image.

Nothing happens at import time: submodules are imported where they are used.
"""

__version__ = "0.1.0"
