"""lionbench: benchmark and reference implementation of parameter-efficient transfer learning
in vision, built around LION (Wang et al., "Implicit Vision Prompt Tuning")."""

__version__ = "0.1.0"
