"""perf: ``lionbench bench``, the cost of a training step per method and backbone.

Owns the step timing against the frozen-backbone floor and fine-tuning (bench.py), memory
measurement (memory.py), the extra checks (checks.py: equilibrium memory, feature cache), the
presets in ``benchmarks/perf/`` (preset.py) and the report with its machine (report.py). May
import training, methods, data and the core modules; never the runner, reports or the CLI.
"""
