"""Which OpenVINO devices exist, and a clear word when the asked-for one does not."""

from __future__ import annotations

import re

import openvino as ov

from .errors import DeviceError

# Virtual devices that take a list of real ones: AUTO:GPU,CPU and the like.
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


def _members(device: str) -> tuple[str, list[str]]:
    head, _, rest = device.partition(":")
    return head.upper(), [m.strip() for m in rest.split(",") if m.strip()]


def check_device(core: ov.Core, device: str) -> None:
    """Raise DeviceError unless every real device named in `device` is present."""
    present = core.available_devices
    listed = ", ".join(present) or "none"
    head, members = _members(device)
    wanted = members if head in _VIRTUAL else [device]
    if head in _VIRTUAL and not members:
        return
    for name in wanted:
        base = re.sub(r"\.\d+$", "", name.upper())  # GPU.1 -> GPU
        if base == "MYRIAD":
            raise DeviceError(
                "device MYRIAD (Intel Neural Compute Stick 2) was removed from OpenVINO in 2023.0 "
                f"(last supported in 2022.3 LTS); devices present: {listed}"
            )
        if name.upper() not in present and base not in {p.split(".")[0] for p in present}:
            raise DeviceError(f"device '{name}' is not present; devices present: {listed}")


def describe_devices(core: ov.Core) -> list[tuple[str, str]]:
    return [(d, core.get_property(d, "FULL_DEVICE_NAME")) for d in core.available_devices]
