"""Numbers from Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 15 (2014), that our results are compared with, and the paper's method labels.

Table 9 is exact; the figure values were digitised from the vector paths of the paper's PDF.
"""

# Table 9: MNIST test error (%) of 784-1024-1024-2048-10 ReLU nets trained with SGD, by regularizer
# (keys are our conf/regularizer/ names). The paper has no unregularized or dropout-only row.
TABLE9_TEST_ERROR = {
    "l2": 1.62,
    "l2_l1_late": 1.60,
    "l2_kl_sparsity": 1.55,
    "max_norm": 1.35,
    "dropout_l2": 1.25,
    "dropout_max_norm": 1.05,
}

TABLE9_ROW_LABELS = {
    "l2": "L2",
    "l2_l1_late": "L2 + L1 applied towards the end of training",
    "l2_kl_sparsity": "L2 + KL-sparsity",
    "max_norm": "Max-norm",
    "dropout_l2": "Dropout + L2",
    "dropout_max_norm": "Dropout + Max-norm",
}

# every method by the paper's wording; rows the paper lacks are marked as ours
METHOD_LABELS = {
    "none": "No regularization (ours)",
    "dropout": "Dropout (ours)",
    "l1": "L1 (ours)",
    "l1_l2": "L1 + L2 (ours)",
    **TABLE9_ROW_LABELS,
}

# Table 9's rows in the paper's order (worst to best), with the rows we add first
TABLE9_ORDER = ["none", "dropout", "l1", "l1_l2", "l2", "l2_l1_late", "l2_kl_sparsity", "max_norm", "dropout_l2",
                "dropout_max_norm"]


def display_order(regularizers) -> list[str]:
    """The distinct regularizers in TABLE9_ORDER, any others after them as first seen: the one
    order tables, figures and legends use."""
    present = list(dict.fromkeys(regularizers))
    return sorted(present, key=lambda r: TABLE9_ORDER.index(r) if r in TABLE9_ORDER else len(TABLE9_ORDER))

# Fig. 9a: 784-2048-2048-2048-10 ReLU, no input dropout, hidden retain probability p (MNIST).
FIG9A_P = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
FIG9A_TEST_ERROR = [3.19, 1.79, 1.21, 1.12, 1.06, 1.09, 1.10, 1.08, 1.26, 1.65]
FIG9A_TRAIN_ERROR = [2.73, 0.65, 0.03, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # "≈ 0" from p = 0.5 on

# Fig. 10: 784-1024-1024-2048-10, training-set size N (MNIST), test error with / without dropout.
FIG10_N = [100, 500, 1000, 5000, 10000, 50000]
FIG10_WITH_DROPOUT = [26.62, 13.19, 10.60, 2.94, 2.39, 1.28]
FIG10_WITHOUT_DROPOUT = [22.84, 13.07, 10.73, 4.69, 3.27, 1.69]

# Fig. 4 (MNIST, several architectures, 1M updates): test error at the end of training
FIG4_WITHOUT_DROPOUT = (1.65, 1.82)  # last-100k means of the nets without dropout
FIG4_WITH_DROPOUT = (1.00, 1.14)


# the paper's budget (Appendix B.1): a run trained much shorter is a miniature, compared by rank
PAPER_UPDATES = 1_000_000


def is_paper_scale(config: dict) -> bool:
    """Whether a run is the paper's Table 9 setting (full MNIST, 784-1024-1024-2048-10, 1 M updates):
    only then are our errors and the paper's directly comparable. The `quick` preset's 1,500 updates
    on the same data and net are not: its table compares ranks."""
    return config["dataset"]["name"] == "mnist" and config["model"]["hidden"] == [1024, 1024, 2048] \
        and not config["dataset"]["train_subset"] and config["optim"]["max_updates"] >= PAPER_UPDATES
