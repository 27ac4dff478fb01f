"""Which registered rule runs in the arena, under which arena id, and why every other one does not.

Pure Python, no import of ``impls.registry`` (whose entry strings name framework code the figure jobs
must not need). Every row of ``impls.registry.RULES`` is either a contender (``CONTENDERS``, by its
``registry_key``) or in ``EXCLUDED`` with the reason; tests/test_arena.py holds the two to the
registry, so a rule added to a paper shows up here or fails the test. The leaderboard lists the
excluded rules with their reasons. ``CONV_CONTENDERS`` are the arena ids that also train the conv
task's net; every other contender is in ``CONV_EXCLUDED`` with the reason (tested likewise).

An arena id names the rule and, for the shared rules that exist in both frameworks, the framework
(``dfa_jax``, ``dfa_torch``): those twins train from the same initial weights and feedback matrices
(``impls.arena.nets``) and must agree (``tests/test_arena.py``, and the leaderboard's twin check).
"""
from __future__ import annotations

from typing import NamedTuple


class Contender(NamedTuple):
    """An arena rule: the registry row whose update equations it runs, in that row's framework."""

    registry_key: str
    framework: str
    name: str          # what the leaderboard and the figures call it
    twin: str = ""     # the arena id of the same rule in the other framework


def _shared(rule: str, name: str) -> dict[str, Contender]:
    return {f"{rule}_jax": Contender(f"shared.jax.{rule}", "jax", f"{name} (JAX)", f"{rule}_torch"),
            f"{rule}_torch": Contender(f"shared.torch.{rule}", "torch", f"{name} (PyTorch)", f"{rule}_jax")}


CONTENDERS: dict[str, Contender] = {
    **_shared("backprop", "BP"), **_shared("fa", "FA"), **_shared("dfa", "DFA"), **_shared("drtp", "DRTP"),
    "np": Contender("nodepert.np", "jax", "NP"),
    "np_indep_noise": Contender("nodepert.np_indep_noise", "jax", "NP (independent noise)"),
    "np_clean_pre": Contender("nodepert.np_clean_pre", "jax", "NP (clean pre-activations)"),
    "np_batch_scalar": Contender("nodepert.np_batch_scalar", "jax", "NP (batch-scalar)"),
    "ll_cce": Contender("bpfree.cce", "jax", "LL-cce"),
    "ll_mse": Contender("bpfree.mse", "jax", "LL-mse"),
    "pepita": Contender("pepita.pepita", "torch", "PEPITA"),
    **{rule: Contender(f"two_routes.{rule}", "jax", name) for rule, name in (
        ("wm", "WM"), ("ia", "IA"), ("sa", "SA"), ("aa", "AA"), ("kp", "KP"), ("kp_equal_leak", "KP (equal leak)"))},
}

#: the reference every cost is divided by, per framework
BASELINE = {"jax": "backprop_jax", "torch": "backprop_torch"}

_SAME_AS = "the same update equations as the arena's {0} ({1}), which runs once"
_OPTIMISER = ("{0} with another optimiser, not another rule: the arena gives every rule the same optimiser "
              "(hparams.optimizer)")
_CONV = ("implemented for the paper's all-convolutional nets only (impls.wide_align.models, the frozen initial net "
         "of that architecture in its update); there is no MLP form of this code to run as specified")
_CONV_TWIN = ("this paper's version of {0} is written for its all-convolutional nets (impls.wide_align.models); the "
              "arena runs {0} as {1}")
_RNN = "a rule of the recurrent Add task (impls.wide_align.add_task), not of a feed-forward net"

#: registry key -> why it is not a contender (rules of the papers' own architectures, aliases, optimisers)
EXCLUDED: dict[str, str] = {
    "nodepert.sgd": _SAME_AS.format("backprop_jax", "impls.rules.backprop"),
    "nodepert.np_wd": _OPTIMISER.format("NP"), "nodepert.np_adam": _OPTIMISER.format("NP"),
    "nodepert.sgd_wd": _OPTIMISER.format("SGD"), "nodepert.sgd_adam": _OPTIMISER.format("SGD"),
    "bpfree.bp": _SAME_AS.format("backprop_jax", "exact gradient of the same loss"),
    "bpfree.fa": _SAME_AS.format("fa_jax", "impls.rules.fa"),
    "bpfree.dfa": _SAME_AS.format("dfa_jax", "impls.rules.dfa"),
    "bpfree.drtp": _SAME_AS.format("drtp_jax", "impls.rules.drtp"),
    "pepita.bp": _SAME_AS.format("backprop_torch", "impls.rules_torch.backprop"),
    "pepita.fa": _SAME_AS.format("fa_torch", "impls.rules_torch.fa"),
    "pepita.drtp": _SAME_AS.format("drtp_torch", "impls.rules_torch.drtp"),
    "two_routes.bp": _SAME_AS.format("backprop_jax", "R = 0 and B tied to W"),
    "two_routes.fa": _SAME_AS.format("fa_jax", "R = 0 and B fixed"),
    "wide_align.bp": _CONV_TWIN.format("BP", "backprop_jax and backprop_torch"),
    "wide_align.fa": _CONV_TWIN.format("FA", "fa_jax and fa_torch"),
    "wide_align.dfa": _CONV_TWIN.format("DFA", "dfa_jax and dfa_torch"),
    **{f"wide_align.{rule}": _CONV for rule in ("alignzero", "alignada", "alignprop", "lastlayer")},
    "wide_align.bptt": _RNN, "wide_align.readout": _RNN,
}


#: arena ids that also train the conv task's net (``model.arch: conv``, ``impls.arena.jax_conv_rules``)
CONV_CONTENDERS = ("backprop_jax", "fa_jax", "dfa_jax", "drtp_jax", "np", "np_indep_noise",
                   "wm", "ia", "sa", "aa", "kp", "kp_equal_leak")

_TORCH_DENSE = ("the PyTorch code of {0} (impls.rules_torch) has dense layers only; on the conv task {0} runs in "
                "JAX ({1})")
_NP_CONV = ("node perturbation's conv code (impls.nodepert.convnets) has the paper's shared-noise and "
            "independent-noise estimators only (np, np_indep_noise)")
#: arena id -> why it does not run on the conv task
CONV_EXCLUDED: dict[str, str] = {
    **{f"{rule}_torch": _TORCH_DENSE.format(name, f"{rule}_jax") for rule, name in (
        ("backprop", "BP"), ("fa", "FA"), ("dfa", "DFA"), ("drtp", "DRTP"))},
    "np_clean_pre": _NP_CONV, "np_batch_scalar": _NP_CONV,
    **{rule: ("bpfree's conv code (impls.bpfree.conv) has stride-1 convolutions with max pooling; the conv task's "
              "net downsamples with a strided convolution") for rule in ("ll_cce", "ll_mse")},
    "pepita": ("PEPITA's conv code (impls.pepita.models, the paper's Net1conv1fcXL) is one stride-1 convolution "
               "without padding and a readout; it has no stack of strided 'SAME' convolutions"),
}


def conv_exclusion(rule: str) -> str | None:
    """Why arena id ``rule`` does not train the conv task, or None if it does."""
    return None if rule in CONV_CONTENDERS else CONV_EXCLUDED[rule]


def framework_of(rule: str) -> str:
    return CONTENDERS[rule].framework


def paper_of(rule: str) -> str:
    """The paper whose code an arena id runs (``shared`` for impls.rules / impls.rules_torch)."""
    return CONTENDERS[rule].registry_key.split(".")[0]


def display_name(rule: str) -> str:
    """The leaderboard's name of an arena id (the id itself for an unknown one)."""
    return CONTENDERS[rule].name if rule in CONTENDERS else rule
