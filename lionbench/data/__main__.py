"""``python -m lionbench.data``: rewrite the dataset catalog the CLI checks names against."""

from lionbench.data.names import write_dataset_catalog

print(f"wrote {write_dataset_catalog()}")
