"""``python -m lionbench``: the ``lionbench`` command."""

from lionbench.cli import main

if __name__ == "__main__":
    main()
