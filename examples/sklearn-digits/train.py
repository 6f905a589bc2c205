"""Tune a scikit-learn SVC on the digits data set that ships with scikit-learn (nothing is downloaded).
Reports the 3-fold cross-validated accuracy and the fit time."""

import argparse
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

import kubetune

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, required=True)
parser.add_argument("--gamma", type=float, required=True)
parser.add_argument("--kernel", choices=["rbf", "poly", "sigmoid"], required=True)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
started = time.perf_counter()
scores = cross_val_score(SVC(C=args.C, gamma=args.gamma, kernel=args.kernel), X / 16.0, y, cv=3)
kubetune.report(accuracy=float(scores.mean()), fit_seconds=time.perf_counter() - started)
