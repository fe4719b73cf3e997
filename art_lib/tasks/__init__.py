"""The built-in benchmarks, one module per family: loaders, prompt format, parser, scorer and SFT target.

`maths` (GSM8K, SVAMP), `choice` (GPQA) and `tools` (BFCL, ToolMind) each have a `register()` that adds
their `Benchmark` objects to `art_lib.registry`; importing this package calls them, in that order (the
registry imports it on its first lookup). `tool_calls` (tool schemas and call parsing) and `tool_check`
(BFCL's checking rules) serve `tools`.
"""

from . import choice, maths, tools

for _family in (maths, choice, tools):
    _family.register()
