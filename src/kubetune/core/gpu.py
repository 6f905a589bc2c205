"""Packing trials' GPU shares onto the GPUs of one machine.

A request below 1 is a share of one GPU (four 0.25 trials share a device); a request of 1 or more takes
that many whole, otherwise idle GPUs. Shares are kept in integer thousandths so that 0.1 + 0.2 fills
exactly what it should. Fractional requests go to the fullest GPU they still fit on (best fit), which
keeps whole GPUs free for whole-GPU trials.
"""

from __future__ import annotations

from collections.abc import Sequence

UNITS = 1000


def _units(amount: float) -> int:
    return round(amount * UNITS)


class GpuPool:
    def __init__(self, devices: Sequence[str]):
        self.devices = list(devices)
        self._used = {d: 0 for d in self.devices}

    def can_ever_fit(self, amount: float) -> bool:
        if amount <= 0:
            return True
        if amount < 1:
            return bool(self.devices)
        return int(amount) <= len(self.devices)

    def allocate(self, amount: float) -> list[str] | None:
        """Devices for one trial, or None when they are not free now."""
        if amount <= 0:
            return []
        if amount < 1:
            need = _units(amount)
            fitting = [d for d in self.devices if self._used[d] + need <= UNITS]
            if not fitting:
                return None
            device = max(fitting, key=lambda d: self._used[d])
            self._used[device] += need
            return [device]
        idle = [d for d in self.devices if self._used[d] == 0][: int(amount)]
        if len(idle) < int(amount):
            return None
        for device in idle:
            self._used[device] = UNITS
        return idle

    def release(self, devices: Sequence[str], amount: float) -> None:
        share = _units(amount) if amount < 1 else UNITS
        for device in devices:
            self._used[device] = max(self._used[device] - share, 0)

    def capacity(self, amount: float) -> int:
        """How many more trials of ``amount`` fit right now."""
        if amount <= 0:
            return 1 << 30
        if amount < 1:
            need = _units(amount)
            return sum((UNITS - used) // need for used in self._used.values())
        return sum(1 for used in self._used.values() if used == 0) // int(amount)
