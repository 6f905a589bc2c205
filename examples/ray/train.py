"""Train a small neural network (scikit-learn's MLPClassifier) on the digits data set that ships with
scikit-learn, one epoch at a time with partial_fit, and print the validation loss after every epoch as a JSON
line: kubetune reads the trial's output, so early stopping follows the trial without the trial importing
kubetune (a Ray cluster needs scikit-learn, and nothing else, for it). Nothing is downloaded."""

import argparse
import json

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, required=True)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--alpha", type=float, required=True)
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--epochs", type=int, default=27)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
X_train, X_valid, y_train, y_valid = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)
model = MLPClassifier(hidden_layer_sizes=(args.hidden,), learning_rate_init=args.lr, alpha=args.alpha,
                      batch_size=args.batch_size, random_state=0)
classes = np.unique(y)
for epoch in range(1, args.epochs + 1):
    model.partial_fit(X_train, y_train, classes=classes)  # one pass over the training data
    loss = float(log_loss(y_valid, model.predict_proba(X_valid), labels=classes))
    accuracy = float(model.score(X_valid, y_valid))
    # flush: the output goes to a file, and a report held in a buffer is one early stopping cannot see yet
    print(json.dumps({"step": epoch, "loss": loss, "accuracy": accuracy}), flush=True)
