"""A contract fake of `pynvml` (nvidia-ml-py): the functions, constants and errors RemoteGPU's host agent
calls, over GPUs described in a JSON file, so the agent is tested where no NVIDIA driver exists.

Injected where the agent imports `pynvml`: `sys.modules["pynvml"] = remotegpu.ops.fakes.nvml` in a
test, or, for a `remotegpu agent` process, a `pynvml.py` first on `PYTHONPATH` that does
`from remotegpu.ops.fakes.nvml import *`. The state file (path in `REMOTEGPU_FAKE_NVML`) is read on
every call, so a test changes a GPU by rewriting it:

    {"gpus": [{"uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559,
               "ecc_uncorrected": 0, "ecc_supported": true, "clocks_event_reasons": 0, "xids": [79]}],
     "driver_loaded": true}

Behaviour follows nvidia-ml-py 12/13: every call before `nvmlInit` raises `NVMLError_Uninitialized`;
`nvmlDeviceGetUUID` and `nvmlDeviceGetName` return `str`; a handle whose GPU has left the file raises
`NVMLError_GpuIsLost`; ECC counters of a GPU without ECC raise `NVMLError_NotSupported`;
`nvmlEventSetWait_v2` returns one XID event per entry of a registered GPU's `xids` not yet delivered, or
raises `NVMLError_Timeout` after `timeoutms` (errors before the registration are no events, as in NVML). Anything else the agent might call does not exist here
(`AttributeError`), as a fake must refuse what it was not written for.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15

NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1

nvmlEventTypeXidCriticalError = 0x0000000000000008

nvmlClocksEventReasonGpuIdle = 0x0000000000000001
nvmlClocksEventReasonApplicationsClocksSetting = 0x0000000000000002
nvmlClocksEventReasonSwPowerCap = 0x0000000000000004
nvmlClocksEventReasonHwSlowdown = 0x0000000000000008
nvmlClocksEventReasonSyncBoost = 0x0000000000000010
nvmlClocksEventReasonSwThermalSlowdown = 0x0000000000000020
nvmlClocksEventReasonHwThermalSlowdown = 0x0000000000000040
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x0000000000000080
nvmlClocksEventReasonDisplayClockSetting = 0x0000000000000100

STATE_VARIABLE = "REMOTEGPU_FAKE_NVML"

_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    """As pynvml's: `NVMLError(code)` is an instance of the code's own subclass; `.value` is the code."""

    _by_value: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        chosen = NVMLError._by_value.get(value, cls) if cls is NVMLError else cls
        error = Exception.__new__(chosen)
        error.value = value
        return error

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _STRINGS.get(self.value, f"NVML Error with code {self.value}")


def _subclass(name: str, value: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *_args: Any) -> NVMLError:
        return NVMLError.__new__(cls, value)

    made = type(name, (NVMLError,), {"__new__": new, "__init__": lambda self, *_a: None})
    NVMLError._by_value[value] = made
    return made


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_Timeout = _subclass("NVMLError_Timeout", NVML_ERROR_TIMEOUT)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)


@dataclass(frozen=True)
class _Handle:
    uuid: str


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class _EventData:
    """`c_nvmlEventData_t`'s fields."""

    device: _Handle
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class _EventSet:
    devices: set[str] = field(default_factory=set)
    delivered: dict[str, int] = field(default_factory=dict)


_lock = threading.Lock()
_initialised = 0


def _state() -> dict[str, Any]:
    path = os.environ.get(STATE_VARIABLE)
    if not path:
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    state: dict[str, Any] = json.loads(Path(path).read_text())
    return state


def _gpus() -> list[dict[str, Any]]:
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    gpus: list[dict[str, Any]] = _state().get("gpus", [])
    return gpus


def _gpu(handle: _Handle) -> dict[str, Any]:
    for gpu in _gpus():
        if gpu["uuid"] == handle.uuid:
            return gpu
    raise NVMLError(NVML_ERROR_GPU_IS_LOST)


def nvmlInit() -> None:
    """Load the (fake) driver; `NVMLError_DriverNotLoaded` when the state says it is not loaded."""
    global _initialised  # noqa: PLW0603 - NVML's init count is process-wide
    if not _state().get("driver_loaded", True):
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    with _lock:
        _initialised += 1


def nvmlShutdown() -> None:
    global _initialised  # noqa: PLW0603
    with _lock:
        if not _initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        _initialised -= 1


def nvmlSystemGetDriverVersion() -> str:
    _gpus()
    return str(_state().get("driver_version", "550.54.15"))


def nvmlDeviceGetCount() -> int:
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    gpus = _gpus()
    if not 0 <= index < len(gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(gpus[index]["uuid"])


def nvmlDeviceGetIndex(handle: _Handle) -> int:
    _gpu(handle)
    return next(i for i, gpu in enumerate(_gpus()) if gpu["uuid"] == handle.uuid)


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    return str(_gpu(handle)["uuid"])


def nvmlDeviceGetName(handle: _Handle) -> str:
    return str(_gpu(handle)["name"])


def nvmlDeviceGetMemoryInfo(handle: _Handle, version: int | None = None) -> _Memory:
    total = int(_gpu(handle)["memory_mib"]) << 20
    return _Memory(total=total, free=total, used=0)


def nvmlDeviceGetTotalEccErrors(handle: _Handle, errorType: int, counterType: int) -> int:
    gpu = _gpu(handle)
    if not gpu.get("ecc_supported", True):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
        return int(gpu.get("ecc_uncorrected", 0))
    return int(gpu.get("ecc_corrected", 0))


def nvmlDeviceGetCurrentClocksEventReasons(handle: _Handle) -> int:
    return int(_gpu(handle).get("clocks_event_reasons", 0))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: _Handle) -> int:
    return nvmlDeviceGetCurrentClocksEventReasons(handle)


def nvmlEventSetCreate() -> _EventSet:
    _gpus()
    return _EventSet()


def nvmlDeviceRegisterEvents(handle: _Handle, eventTypes: int, eventSet: _EventSet) -> None:
    gpu = _gpu(handle)
    if eventTypes & nvmlEventTypeXidCriticalError:
        eventSet.devices.add(handle.uuid)
        # as NVML: only errors after the registration are events
        eventSet.delivered.setdefault(handle.uuid, len(gpu.get("xids", [])))


def nvmlEventSetWait_v2(eventSet: _EventSet, timeoutms: int) -> _EventData:
    deadline = time.monotonic() + timeoutms / 1000
    while True:
        for gpu in _gpus():
            uuid = gpu["uuid"]
            if uuid not in eventSet.devices:
                continue
            xids = gpu.get("xids", [])
            sent = eventSet.delivered.get(uuid, 0)
            if sent < len(xids):
                eventSet.delivered[uuid] = sent + 1
                return _EventData(_Handle(uuid), nvmlEventTypeXidCriticalError, int(xids[sent]))
        if time.monotonic() >= deadline:
            raise NVMLError(NVML_ERROR_TIMEOUT)
        time.sleep(min(0.02, max(deadline - time.monotonic(), 0)))


def nvmlEventSetWait(eventSet: _EventSet, timeoutms: int) -> _EventData:
    return nvmlEventSetWait_v2(eventSet, timeoutms)


def nvmlEventSetFree(eventSet: _EventSet) -> None:
    eventSet.devices.clear()


__all__ = [name for name in dir() if name.startswith(("nvml", "NVML"))]
