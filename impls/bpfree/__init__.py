"""bpfree: DFA, DRTP, local losses, FA and BP for fully connected nets and the source papers' conv nets."""

#: Implementation version: part of every run id of this paper (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
