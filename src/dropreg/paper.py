"""Numbers from Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 15 (2014), that our results are compared with."""

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
