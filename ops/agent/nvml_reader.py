"""Reading GPUs through NVML (`pynvml`, from nvidia-ml-py): identity, memory and health.

Health, as the NVIDIA device plugin and DCGM judge it:
- **XID errors** arrive as NVML events (`nvmlEventTypeXidCriticalError`), so the agent waits on an event
  set between reads and reacts at once. XIDs an application causes (13, 31, 43, 45, 68, 109: a bad kernel,
  a page fault of the user's program) are not the GPU's fault and are ignored, as the device plugin does.
  Any other XID makes the GPU unhealthy until the agent restarts (after a GPU reset or reboot): NVML
  reports the error once, so forgetting it would put a broken GPU back in the pool.
- **Uncorrected ECC errors** since the driver loaded (volatile counter) make it unhealthy; a GPU without
  ECC reports none.
- **Clock event reasons**: hardware slowdown, hardware thermal slowdown and hardware power brake mean the
  board protects itself (overheating, power supply trouble): unhealthy. Software power capping and
  software thermal slowdown are normal under load: noted, still healthy.
A GPU NVML can no longer reach (`GPU is lost`) is left out of the report, so inventory sync marks it lost.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from remotegpu.core.inventory.gpu_report import GpuReading

APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
"""XIDs caused by the application running on the GPU, not by the GPU."""
_UNHEALTHY_CLOCK_EVENTS = {
    0x08: "hardware slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake slowdown",
}
_NOTED_CLOCK_EVENTS = {0x04: "software power cap", 0x20: "software thermal slowdown"}


def _text(value: str | bytes) -> str:
    """nvidia-ml-py returns str; releases before 11.515 returned bytes."""
    return value.decode() if isinstance(value, bytes) else value


class NvmlReader:
    """One NVML session: `open`, then `read` and `wait_for_errors` in turn, then `close`."""

    def __init__(self, nvml: Any) -> None:
        """`nvml`: the `pynvml` module (or anything exposing its functions, such as the fake)."""
        self.nvml = nvml
        self._events: Any = None
        self._registered: set[str] = set()
        self._xids: dict[str, list[int]] = {}

    def open(self) -> None:
        """Initialise NVML and subscribe to XID events; NVMLError when no driver answers."""
        self.nvml.nvmlInit()
        try:
            self._events = self.nvml.nvmlEventSetCreate()
        except self.nvml.NVMLError_NotSupported:
            self._events = None

    def close(self) -> None:
        """Release the event set and NVML."""
        if self._events is not None:
            self.nvml.nvmlEventSetFree(self._events)
            self._events = None
        self.nvml.nvmlShutdown()

    def read(self) -> list[GpuReading]:
        """Every GPU NVML reaches now, in NVML index order."""
        readings = []
        for index in range(self.nvml.nvmlDeviceGetCount()):
            try:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                readings.append(self._read_one(index, handle))
            except self.nvml.NVMLError_GpuIsLost:
                continue  # fallen off the bus: missing from the report, so it leaves the pool as lost
        return readings

    def _read_one(self, index: int, handle: Any) -> GpuReading:
        nvml = self.nvml
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        self._register(uuid, handle)
        problems: list[str] = []
        healthy = True
        critical = sorted({xid for xid in self._xids.get(uuid, []) if xid not in APPLICATION_XIDS})
        if critical:
            healthy = False
            problems.append("XID " + ", ".join(str(xid) for xid in critical))
        uncorrected = self._optional(
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            )
        )
        if uncorrected:
            healthy = False
            problems.append(f"{uncorrected} uncorrected ECC errors")
        reasons = self._optional(lambda: self._clock_event_reasons(handle))
        for bit, words in _UNHEALTHY_CLOCK_EVENTS.items():
            if reasons & bit:
                healthy = False
                problems.append(words)
        problems.extend(words for bit, words in _NOTED_CLOCK_EVENTS.items() if reasons & bit)
        return GpuReading(
            index=index,
            uuid=uuid,
            model=_text(nvml.nvmlDeviceGetName(handle)),
            memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) >> 20,
            healthy=healthy,
            problems=tuple(problems),
        )

    def _clock_event_reasons(self, handle: Any) -> int:
        # nvmlDeviceGetCurrentClocksEventReasons since driver 535; the throttle name before it
        read = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if read is None:
            read = self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(read(handle))

    def _optional(self, read: Any) -> int:
        """A counter the GPU may not support (no ECC, no clock reasons): 0 then."""
        try:
            return int(read())
        except self.nvml.NVMLError_NotSupported:
            return 0

    def _register(self, uuid: str, handle: Any) -> None:
        if self._events is None or uuid in self._registered:
            return
        # a GPU without XID events (some older boards): ECC and clocks still count
        with contextlib.suppress(self.nvml.NVMLError_NotSupported):
            self.nvml.nvmlDeviceRegisterEvents(handle, self.nvml.nvmlEventTypeXidCriticalError, self._events)
        self._registered.add(uuid)

    def wait_for_errors(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to `seconds` (less once `stop` is set) for XID errors; True when a GPU's health changed."""
        if self._events is None:
            stop.wait(seconds)
            return False
        changed = False
        remaining_ms = int(seconds * 1000)
        while remaining_ms > 0 and not stop.is_set():
            slice_ms = min(remaining_ms, 500)  # short slices: a stop is seen within half a second
            remaining_ms -= slice_ms
            try:
                event = self.nvml.nvmlEventSetWait_v2(self._events, slice_ms)
            except self.nvml.NVMLError_Timeout:
                continue
            uuid = _text(self.nvml.nvmlDeviceGetUUID(event.device))
            self._xids.setdefault(uuid, []).append(int(event.eventData))
            if int(event.eventData) not in APPLICATION_XIDS:
                return True
        return changed
