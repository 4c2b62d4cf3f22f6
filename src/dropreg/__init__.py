"""dropreg: reproduce the dropout paper's MNIST regularization comparison (Table 9) and the notMNIST exercise."""

__version__ = "0.1.0"
