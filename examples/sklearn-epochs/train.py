"""Train a linear classifier (scikit-learn's SGDClassifier) on the digits data set that ships with
scikit-learn, one epoch at a time with partial_fit, and report the validation loss after every epoch, so
that early stopping can stop the hopeless trials (nothing is downloaded)."""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

import kubetune

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float, required=True)
parser.add_argument("--eta0", type=float, required=True)
parser.add_argument("--schedule", choices=["constant", "invscaling", "adaptive"], required=True)
parser.add_argument("--epochs", type=int, default=27)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
X_train, X_valid, y_train, y_valid = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)
model = SGDClassifier(loss="log_loss", alpha=args.alpha, eta0=args.eta0, learning_rate=args.schedule,
                      random_state=0)
classes = np.unique(y)
for epoch in range(1, args.epochs + 1):
    model.partial_fit(X_train, y_train, classes=classes)
    loss = log_loss(y_valid, model.predict_proba(X_valid), labels=classes)
    kubetune.report(step=epoch, loss=float(loss), accuracy=float(model.score(X_valid, y_valid)))
