"""Every learning rule of every paper, and the shared twins, in one table (pure Python: no JAX/torch).

A row says where a rule's code lives: ``module`` is the dotted module holding its update equations
(a shared ``impls.rules*`` module where the paper uses the shared math, else the paper's own),
``variants`` the further modules holding architecture-specific forms of the same rule (conv
layers, the recurrent Add task), ``entry`` the paper's dispatch that builds it from a run spec's
``rule:`` value. Rows of ``paper = "shared"`` are the rule modules shared by several papers
(``impls.rules`` in JAX, ``impls.rules_torch`` in PyTorch); ``twin`` names the same rule in the
other framework (tests/test_rules_parity.py checks the twins agree).

Checked by tests/test_registry.py (every ``rule:`` of every papers/*/paper.yaml is registered for
its paper, every module imports) and tests/test_rules_contract.py (every row runs the contract).
"""
from __future__ import annotations

from typing import NamedTuple

SHARED = "shared"
FRAMEWORKS = ("jax", "torch")

LILLICRAP_2016 = ("T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, Random synaptic feedback weights "
                  "support error backpropagation for deep learning, Nat. Commun. 7:13276 (2016)")
NOKLAND_2016 = ("A. Nøkland, Direct Feedback Alignment Provides Learning in Deep Neural Networks, "
                "NeurIPS 2016")
FRENKEL_2021 = ("C. Frenkel, M. Lefebvre, D. Bol, Learning Without Feedback: Fixed Random Learning Signals "
                "Allow for Feedforward Training of Deep Neural Networks, Front. Neurosci. 15:629892 (2021)")
RUMELHART_1986 = ("D. E. Rumelhart, G. E. Hinton, R. J. Williams, Learning representations by "
                  "back-propagating errors, Nature 323:533 (1986)")
PATHAK = "S. Pathak, Backpropagation-Free Algorithms, Volume 1 (github.com/5aurabhpathak/backprop-free-algorithms-vol1)"
MEHTA = ("Y. Mehta, N. Hiratani, P. Humphreys, P. E. Latham, T. Lillicrap, On the limitations of perturbation "
         "based methods for training deep networks")
PEPITA = ("G. Dellaferrera, G. Kreiman, Error-driven Input Modulation: Solving the Credit Assignment Problem "
          "without a Backward Pass, ICML 2022")
KUNIN_2020 = ("D. Kunin, A. Nayebi, J. Sagastuy-Brena, S. Ganguli, J. M. Bloom, D. L. K. Yamins, Two Routes to "
              "Scalable Credit Assignment without Weight Symmetry, ICML 2020")
AKROUT_2019 = ("M. Akrout, C. Wilson, P. C. Humphreys, T. Lillicrap, D. Tweed, Deep Learning without Weight "
               "Transport, NeurIPS 2019")
KOLEN_POLLACK_1994 = ("J. F. Kolen, J. B. Pollack, Backpropagation without weight transport, "
                      "IEEE ICNN 1994; " + AKROUT_2019)
BOOPATHY_2022 = ("A. Boopathy, I. Fiete, How to Train Your Wide Neural Network Without Backprop: An Input-Weight "
                 "Alignment Perspective, ICML 2022")


class Rule(NamedTuple):
    """One learning rule of one paper (or a shared module): see the module docstring."""

    name: str
    paper: str
    framework: str
    module: str
    reference: str
    entry: str = ""
    variants: tuple[str, ...] = ()
    twin: str = ""

    @property
    def key(self) -> str:
        """``paper.name``; shared rows ``shared.<framework>.name``."""
        return f"{SHARED}.{self.framework}.{self.name}" if self.paper == SHARED else f"{self.paper}.{self.name}"

    @property
    def modules(self) -> tuple[str, ...]:
        return (self.module, *self.variants)


def _shared() -> list[Rule]:
    refs = {"backprop": RUMELHART_1986, "fa": LILLICRAP_2016, "dfa": NOKLAND_2016, "drtp": FRENKEL_2021}
    rows = []
    for name, ref in refs.items():
        rows.append(Rule(name, SHARED, "jax", f"impls.rules.{name}", ref, twin=f"impls.rules_torch.{name}"))
        rows.append(Rule(name, SHARED, "torch", f"impls.rules_torch.{name}", ref, twin=f"impls.rules.{name}"))
    return rows


def _nodepert() -> list[Rule]:
    entry, conv = "impls.nodepert.rules:make_rule", ("impls.nodepert.convnets",)
    np_ref = MEHTA + "; code countzerozzz/nodepert"
    rows = [Rule("sgd", "nodepert", "jax", "impls.rules.backprop", RUMELHART_1986, entry, conv)]
    for name in ("np", "np_indep_noise"):
        rows.append(Rule(name, "nodepert", "jax", "impls.nodepert.rules", np_ref, entry, conv))
    for name in ("np_clean_pre", "np_batch_scalar"):
        rows.append(Rule(name, "nodepert", "jax", "impls.nodepert.rules", np_ref, entry))
    # the same estimators fed to another optimiser (impls.nodepert.options.optimizer_kind)
    for name in ("np_wd", "np_adam"):
        rows.append(Rule(name, "nodepert", "jax", "impls.nodepert.rules", np_ref, entry, conv))
    for name in ("sgd_wd", "sgd_adam"):
        rows.append(Rule(name, "nodepert", "jax", "impls.rules.backprop", RUMELHART_1986, entry, conv))
    return rows


def _bpfree() -> list[Rule]:
    entry, here = "impls.bpfree.rules:make_rule", "impls.bpfree.rules"
    return [
        Rule("bp", "bpfree", "jax", here, RUMELHART_1986, entry),
        Rule("dfa", "bpfree", "jax", "impls.rules.dfa", f"{NOKLAND_2016}; as coded by {PATHAK}", entry, (here,)),
        Rule("drtp", "bpfree", "jax", "impls.rules.drtp", f"{FRENKEL_2021}; as coded by {PATHAK}", entry, (here,)),
        Rule("cce", "bpfree", "jax", here, f"local cross-entropy loss of {PATHAK}", entry),
        Rule("mse", "bpfree", "jax", here, f"local squared-error loss of {PATHAK}", entry),
        Rule("fa", "bpfree", "jax", "impls.rules.fa", LILLICRAP_2016, entry, ("impls.bpfree.conv",)),
    ]


def _pepita() -> list[Rule]:
    entry, here = "impls.pepita.rules:compute_grads", "impls.pepita.rules"
    return [
        Rule("pepita", "pepita", "torch", here, PEPITA, entry),
        Rule("bp", "pepita", "torch", "impls.rules_torch.backprop", RUMELHART_1986, entry, (here,)),
        Rule("fa", "pepita", "torch", "impls.rules_torch.fa", LILLICRAP_2016, entry, (here,)),
        Rule("drtp", "pepita", "torch", "impls.rules_torch.drtp", FRENKEL_2021, entry, (here,)),
    ]


def _two_routes() -> list[Rule]:
    entry, here, layers = "impls.two_routes.rules:rule_for_spec", "impls.two_routes.rules", ("impls.two_routes.layers",)
    refs = {"bp": RUMELHART_1986, "fa": LILLICRAP_2016, "wm": AKROUT_2019, "ia": KUNIN_2020, "sa": KUNIN_2020,
            "aa": KUNIN_2020, "kp": KOLEN_POLLACK_1994, "kp_equal_leak": KOLEN_POLLACK_1994}
    return [Rule(name, "two_routes", "jax", here, f"{ref}; as formulated by {KUNIN_2020}" if ref != KUNIN_2020 else ref,
                 entry, layers) for name, ref in refs.items()]


def _wide_align() -> list[Rule]:
    entry, here, rnn = "impls.wide_align.rules:directions", "impls.wide_align.rules", "impls.wide_align.add_task"
    return [
        Rule("bp", "wide_align", "torch", here, RUMELHART_1986, entry),
        Rule("fa", "wide_align", "torch", here, LILLICRAP_2016, entry),
        Rule("dfa", "wide_align", "torch", "impls.rules_torch.dfa", NOKLAND_2016, entry, (here,)),
        Rule("alignzero", "wide_align", "torch", here, BOOPATHY_2022, entry, (rnn,)),
        Rule("alignada", "wide_align", "torch", here, BOOPATHY_2022, entry, (rnn,)),
        Rule("alignprop", "wide_align", "torch", here, BOOPATHY_2022, entry),
        Rule("lastlayer", "wide_align", "torch", here, BOOPATHY_2022, entry),
        Rule("bptt", "wide_align", "torch", rnn, RUMELHART_1986 + " (through time)", f"{rnn}:directions"),
        Rule("readout", "wide_align", "torch", rnn, BOOPATHY_2022, f"{rnn}:directions"),
    ]


RULES: tuple[Rule, ...] = tuple(_shared() + _nodepert() + _bpfree() + _pepita() + _two_routes() + _wide_align())
BY_KEY: dict[str, Rule] = {rule.key: rule for rule in RULES}


def rules_of(paper: str) -> dict[str, Rule]:
    """{name: Rule} of one paper (``"shared"``: name -> JAX row)."""
    return {r.name: r for r in RULES if r.paper == paper and (paper != SHARED or r.framework == "jax")}


def lookup(paper: str, name: str) -> Rule:
    """The row of ``name`` in ``paper``; KeyError naming the registered rules of that paper."""
    rules = rules_of(paper)
    if name not in rules:
        raise KeyError(f"rule {name!r} is not registered for paper {paper!r}; registered: {', '.join(sorted(rules))}")
    return rules[name]
