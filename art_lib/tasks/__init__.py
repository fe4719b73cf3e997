"""The built-in benchmarks, one module per family: loaders, prompt format, parser, scorer and SFT target.

`maths` (GSM8K, SVAMP), `choice` (GPQA) and `tools` (BFCL, ToolMind) each have a `register()` that adds
their `Benchmark` objects to `art_lib.registry`, which imports them by name (`registry.BUILTINS`) on its
first lookup. `tool_calls` (tool schemas and call parsing) and `tool_check` (BFCL's checking rules)
serve `tools`.
"""
