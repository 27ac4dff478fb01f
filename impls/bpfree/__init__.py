"""bpfree: DFA, DRTP, local losses and BP for fully connected nets (spec ../shared/papers/bpfree.md)."""
