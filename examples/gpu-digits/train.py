"""Train a small PyTorch network on scikit-learn's digits data set (nothing is downloaded), on the GPU or
GPU share that kubetune gives this trial through ``CUDA_VISIBLE_DEVICES``, keeping its memory within the share
(``KUBETUNE_GPU_SHARE``); on the CPU when there is none.

Reports the held-out accuracy, whether the training ran on a GPU, the training time and the GPU memory the
trial took at its peak."""

import argparse
import time

import torch
from sklearn.datasets import load_digits

import kubetune

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--hidden", type=int, required=True)
parser.add_argument("--dropout", type=float, required=True)
parser.add_argument("--epochs", type=int, default=100)
args = parser.parse_args()

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if device.type == "cuda" and kubetune.gpu_share():
    # Stay within this trial's share of the GPU: past it, an allocation fails here, not in a neighbour.
    torch.cuda.set_per_process_memory_fraction(kubetune.gpu_share())
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
X = torch.tensor(X / 16.0, dtype=torch.float32)[order].to(device)
y = torch.tensor(y)[order].to(device)
train, held_out = slice(0, 1500), slice(1500, None)

model = torch.nn.Sequential(
    torch.nn.Linear(64, args.hidden), torch.nn.ReLU(), torch.nn.Dropout(args.dropout),
    torch.nn.Linear(args.hidden, args.hidden), torch.nn.ReLU(), torch.nn.Dropout(args.dropout),
    torch.nn.Linear(args.hidden, 10),
).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

started = time.perf_counter()
for _ in range(args.epochs):
    model.train()
    for batch in torch.randperm(1500, device=device).split(64):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X[train][batch]), y[train][batch]).backward()
        optimizer.step()
model.eval()
with torch.no_grad():
    accuracy = (model(X[held_out]).argmax(1) == y[held_out]).float().mean().item()
train_seconds = time.perf_counter() - started

peak_mib = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
kubetune.report(accuracy=accuracy, on_gpu=float(device.type == "cuda"), train_seconds=train_seconds,
                peak_memory_mib=peak_mib)
