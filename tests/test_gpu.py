"""Packing GPU shares onto devices, and finding the devices."""

from __future__ import annotations

from kubetune.core.gpu import GpuPool
from kubetune.runners.devices import detect_gpus


def test_four_quarter_trials_share_one_gpu():
    pool = GpuPool(["0", "1"])
    assert [pool.allocate(0.25) for _ in range(4)] == [["0"]] * 4
    assert pool.allocate(0.25) == ["1"]
    assert pool.capacity(0.25) == 3


def test_whole_gpu_trials_take_idle_devices():
    pool = GpuPool(["0", "1", "2"])
    assert pool.allocate(0.5) == ["0"]
    assert pool.allocate(2) == ["1", "2"]
    assert pool.allocate(1) is None
    pool.release(["1", "2"], 2)
    assert pool.allocate(1) == ["1"]


def test_best_fit_keeps_whole_gpus_free():
    pool = GpuPool(["0", "1"])
    pool.allocate(0.5)
    pool.allocate(0.3)  # fits on the half-used GPU 0
    assert pool.allocate(1) == ["1"]


def test_thirds_and_tenths_add_up_exactly():
    pool = GpuPool(["0"])
    assert all(pool.allocate(0.1) == ["0"] for _ in range(10))
    assert pool.allocate(0.1) is None


def test_cannot_ever_fit():
    assert not GpuPool([]).can_ever_fit(0.5)
    assert not GpuPool(["0"]).can_ever_fit(2)
    assert GpuPool([]).can_ever_fit(0)


def test_detect_from_cuda_visible_devices():
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "0,2"}) == ["0", "2"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == ["GPU-abc"]
