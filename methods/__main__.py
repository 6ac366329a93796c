"""``python -m lionbench.methods``: rewrite the method catalog the reports read."""

from lionbench.methods import write_method_catalog

print(f"wrote {write_method_catalog()}")
