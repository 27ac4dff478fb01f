"""Display names: what a figure's legend, facet titles and axis labels say for a rule id, a factor
column or a dataset id (``np_adam`` -> "NP + Adam", ``n_train`` -> "training images").

Callers: impls.common.plotting (the generic line/final/table plots) and every paper's
``impls/<paper>/figures.py``. One table for the whole suite, so a rule reads the same in every
figure; tests/test_figures_display.py checks every rule in impls.registry has a name here.
Values not in a table are shown as they are (numbers through ``%g``), so a new rule or factor
still plots, with its raw id, until it is named here.
"""
from __future__ import annotations

#: rule id (paper.yaml ``rule:``, impls.registry) -> the name the papers use
RULES = {
    "bp": "BP", "backprop": "BP", "bptt": "BPTT", "sgd": "SGD",
    "fa": "FA", "dfa": "DFA", "drtp": "DRTP",
    "np": "NP", "np_indep_noise": "NP (independent noise)", "np_clean_pre": "NP (clean pre-activations)",
    "np_batch_scalar": "NP (batch-scalar)", "np_wd": "NP + weight decay", "np_adam": "NP + Adam",
    "sgd_wd": "SGD + weight decay", "sgd_adam": "SGD + Adam",
    "cce": "LL-cce", "mse": "LL-mse",
    "pepita": "PEPITA",
    "wm": "WM", "ia": "IA", "sa": "SA", "aa": "AA", "kp": "KP", "kp_equal_leak": "KP (equal leak)",
    "alignzero": "Align-zero", "alignada": "Align-ada", "alignprop": "Align-prop",
    "lastlayer": "last layer only", "readout": "readout only",
}

#: factor column (as impls.common.aggregate.column_name gives it) -> legend / axis title
FACTORS = {
    "rule": "rule", "lr": "learning rate", "hparams.lr": "learning rate", "epoch": "epoch",
    "n_hl": "hidden layers", "model.n_hl": "hidden layers", "width": "width", "model.width": "width",
    "depth": "depth", "model.depth": "depth", "version": "ResNet version", "model.version": "ResNet version",
    "arch": "architecture", "model.arch": "architecture", "n_train": "training images",
    "data.n_train": "training images", "batch_size": "batch size", "dataset": "dataset",
    "condition": "condition", "layer": "layer", "noise_var": "noise variance", "seed": "seed",
    "activation": "activation", "hidden": "hidden units", "batchnorm": "batch norm", "dropout": "dropout",
    "conv": "conv layers", "conv_trained": "conv layers trained", "adversarial_eps": "adversarial ε",
    "alpha": "α", "beta": "β", "gamma": "γ", "input_distribution": "input distribution",
    "diverged_lrs": "diverged learning rates",   # bpfree's best_lr_table: a count per configuration
}

#: reduced metric (a tab_* table's ``metrics:`` column) -> its column title
METRICS = {
    "final_acc": "final test accuracy (%)", "final_test_acc": "final test accuracy (%)",
    "final_test_top5": "final top-5 accuracy (%)", "val_acc": "validation accuracy (%)",
    "final_test_error": "final test error (%)", "final_train_error": "final training error (%)",
    "last10_test_error": "test error, mean of last 10 epochs (%)",
}

#: dataset id -> its usual name
DATASETS = {
    "digits": "digits (scikit-learn)", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST",
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet", "add": "Add task",
}


#: model architecture id (``model.arch``) -> its name in legends, facet titles and table cells
ARCHS = {
    "fc": "FC", "mlp": "MLP", "conv": "conv", "conv_base": "conv base", "allcnn_a": "All-CNN-A",
    "resnet": "ResNet", "allconv": "all-conv", "rnn": "RNN", "linear": "linear",
}


#: factors whose values are counts: integer ticks and integer labels even when pandas read them as floats
INTEGER_FACTORS = {"epoch", "n_hl", "width", "depth", "version", "n_train", "batch_size", "layer", "budget", "seed"}


def rule(rule_id) -> str:
    """A rule's display name (``np_adam`` -> "NP + Adam"); an unknown id as it is."""
    return RULES.get(str(rule_id), str(rule_id))


def factor(column: str) -> str:
    """A factor column's display title (``n_train`` -> "training images"); unknown ones as they are."""
    return FACTORS.get(column, column)


def metric(name: str) -> str:
    """A reduced metric's column title (``final_test_error`` -> "final test error (%)"); unknown as it is."""
    return METRICS.get(name, name)


def level_order(column: str, value) -> tuple:
    """Sort key of a factor's levels in legends and facets: architectures in the order of ``ARCHS``
    (FC before conv, as the papers' tables), numbers before strings, each ascending."""
    if column.rsplit(".", 1)[-1] == "arch" and str(value) in ARCHS:
        return (0, list(ARCHS).index(str(value)))
    return (1, isinstance(value, str), value)


def level(column: str, value) -> str:
    """One level of a factor as a legend or facet shows it: rule and dataset ids by name, switches as
    yes/no, ResNet versions as "v1", floats through ``%g`` with a plain exponent (0.0001 -> "0.0001", 5e-05 -> "5e-5",
    1e+06 -> "1e6"), integers as integers."""
    name = column.rsplit(".", 1)[-1]
    if isinstance(value, bool) or type(value).__name__ == "bool_" or str(value) in ("True", "False"):
        return "yes" if str(value) == "True" else "no"       # a switch (batch norm, ERINsign): yes / no
    if name == "rule":
        return rule(value)
    if name == "dataset":
        return DATASETS.get(str(value), str(value))
    if name == "arch":
        return ARCHS.get(str(value), str(value))
    if isinstance(value, float) and value.is_integer() and name in INTEGER_FACTORS:
        value = int(value)
    if name == "version":
        return f"v{value}"
    return short_float(value) if isinstance(value, float) else str(value)


def short_float(value: float) -> str:
    """``%g`` without the exponent's sign and zero padding: 5e-05 -> "5e-5", 1e+06 -> "1e6", 0.25 -> "0.25"."""
    mantissa, e, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa
