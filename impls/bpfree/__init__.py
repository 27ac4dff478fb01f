"""bpfree: DFA, DRTP, local losses, FA and BP for fully connected nets and the source papers' conv nets."""
