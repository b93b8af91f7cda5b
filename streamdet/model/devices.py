"""Which OpenVINO devices exist, and a clear word when the asked-for one does not."""

from __future__ import annotations

import re

import openvino as ov

from ..errors import DeviceError

# Virtual devices that spread work over a list of real ones: AUTO:GPU,CPU and the like.
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")
# AUTO alone picks from whatever is present; the others need their list.
_NEEDS_LIST = ("MULTI", "HETERO", "BATCH")

# Plugins OpenVINO dropped: guides and old configs still name them, so say what happened.
_REMOVED = {
    "MYRIAD": "MYRIAD (Intel NCS2) was removed from OpenVINO in 2023.0 (last supported in 2022.3 LTS)",
    "HDDL": "HDDL (Intel Vision Accelerator) was removed from OpenVINO in 2023.0 (last supported in 2022.3 LTS)",
    "GNA": "GNA (Intel Gaussian & Neural Accelerator) was removed from OpenVINO in 2024.0 (last supported in 2023.3 LTS)",
}


def normalise(device: str) -> str:
    """OpenVINO device names are upper case and `cpu` fails to compile; accept any case from users."""
    return device.strip().upper()


def _members(device: str) -> tuple[str, list[str]]:
    head, _, rest = device.partition(":")
    return head, [m.strip() for m in rest.split(",") if m.strip()]


def _real_name(member: str) -> str:
    # BATCH:GPU(4) gives a batch size, not part of the name.
    return re.sub(r"\(\d+\)$", "", member)


def _is_present(name: str, present: list[str]) -> bool:
    if name in present:
        return True
    # Plain GPU is fine when OpenVINO lists GPU.0, GPU.1; an explicit index must exist as listed.
    return "." not in name and any(p.split(".")[0] == name for p in present)


def check_device(core: ov.Core, device: str) -> None:
    """Raise DeviceError unless every real device named in `device` is present."""
    present = list(core.available_devices)
    listed = ", ".join(present) or "none"
    text = normalise(device)
    if not text:
        raise DeviceError(f"no device given; devices present: {listed}")
    head, members = _members(text)
    if head in _VIRTUAL:
        if not members and head in _NEEDS_LIST:
            raise DeviceError(f"device '{device}' needs a device list, e.g. {head}:{present[0] if present else 'CPU'}")
        wanted = members
    else:
        wanted = [text]
    for member in wanted:
        if member.startswith("-"):
            continue  # AUTO:-GPU excludes a device: fine whether or not it exists
        name = _real_name(member)
        removed = _REMOVED.get(name.split(".")[0])
        if removed:
            raise DeviceError(f"{removed}; devices present: {listed}")
        if not _is_present(name, present):
            raise DeviceError(f"device '{member}' is not present; devices present: {listed}")


def describe_devices(core: ov.Core) -> list[tuple[str, str]]:
    """(name, FULL_DEVICE_NAME) for every device OpenVINO finds."""
    return [(d, core.get_property(d, "FULL_DEVICE_NAME")) for d in core.available_devices]


def cpu_role(device: str) -> str | None:
    """How a device runs on the CPU: "direct" (CPU itself, or BATCH on it, which passes settings through),
    "member" (AUTO, MULTI or HETERO that may place work there), or None (not at all)."""
    head, members = _members(normalise(device))
    on_cpu = [_real_name(m).split(".")[0] == "CPU" for m in members if not m.startswith("-")]
    if head.split(".")[0] == "CPU" or (head == "BATCH" and any(on_cpu)):
        return "direct"
    if head in ("AUTO", "MULTI", "HETERO"):
        picks_any = head == "AUTO" and not on_cpu and "-CPU" not in members
        return "member" if any(on_cpu) or picks_any else None
    return None


# streamdet's precision names, OpenVINO's INFERENCE_PRECISION_HINT values, and the device capability each needs.
PRECISIONS = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}


def _real_devices(core: ov.Core, device: str) -> list[str]:
    """The real devices a device string may run on: itself, its members, or (AUTO alone) every device present."""
    head, members = _members(normalise(device))
    if head not in _VIRTUAL:
        return [head]
    named = [_real_name(m) for m in members if not m.startswith("-")]
    if named:
        return named
    excluded = {_real_name(m[1:]) for m in members if m.startswith("-")}
    return [d for d in core.available_devices if d not in excluded and d.split(".")[0] not in excluded]


def precision_config(core: ov.Core, device: str, precision: str) -> dict:
    """The compile settings that make `device` infer in `precision` ("auto": the device's own choice).

    A device OpenVINO would quietly run in another precision (a CPU without BF16 given bf16, one without
    FP16 given f16) is refused here: its capabilities say what it can do.
    """
    if precision == "auto":
        return {}
    if precision not in PRECISIONS:
        raise DeviceError(f"precision '{precision}' is not known; use one of {', '.join(PRECISIONS)} or auto")
    hint = {"INFERENCE_PRECISION_HINT": precision}
    real = _real_devices(core, device)
    for name in real:
        try:
            capabilities = core.get_property(name, "OPTIMIZATION_CAPABILITIES")
        except Exception:  # a device that cannot say: let it compile, the compiled model is read back
            continue
        if PRECISIONS[precision] not in capabilities:
            runs = ", ".join(p for p, cap in PRECISIONS.items() if cap in capabilities) or "none of f32, bf16, f16"
            raise DeviceError(f"device {name} cannot infer in {precision} (it runs {runs}); "
                              "set inference.precision (--precision) to one of those, or auto")
    head = _members(normalise(device))[0]
    if head in ("AUTO", "MULTI", "HETERO"):
        # These take no precision of their own: it reaches their devices only this way.
        return {"DEVICE_PROPERTIES": {name: dict(hint) for name in real}}
    return hint


def _type_name(value) -> str:
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def compiled_precision(compiled: ov.CompiledModel) -> tuple[list[str], str]:
    """(execution devices, precision) read back from a compiled model: what it really runs on and in.

    AUTO, MULTI and HETERO do not report a precision themselves; their devices do, under DEVICE_PROPERTIES.
    The precision is "unknown" where no device says, or "f32/bf16" where devices differ.
    """
    try:
        devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
    except Exception:
        devices = []
    try:
        return devices, _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except Exception:
        pass
    found = []
    try:
        per_device = compiled.get_property("DEVICE_PROPERTIES")
    except Exception:
        per_device = {}
    for name in devices or per_device:
        value = per_device.get(name, {}).get("INFERENCE_PRECISION_HINT")
        if value is not None and _type_name(value) not in found:
            found.append(_type_name(value))
    return devices, "/".join(found) or "unknown"
