"""arena: every learning rule of the five papers on one MLP, one dataset, one budget and one tuning protocol.

Modules: ``contenders`` (which registered rule runs as which arena rule, and why the others do not),
``options`` (the run spec), ``data`` (dataset, validation split, a user's own ``.npz``), ``nets``
(the shared network, initial weights and feedback matrices, drawn in numpy so both frameworks start
from the same numbers), ``jax_rules`` and ``torch_rules`` (each rule in its own framework),
``train`` (the program the common driver trains), ``cost`` (time per epoch and peak memory, each
rule alone in a fresh process) and ``figures`` (leaderboard, learning curves, accuracy vs cost).
"""

#: Implementation version: part of every run id of this module (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
