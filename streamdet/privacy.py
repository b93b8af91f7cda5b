"""streamdet sends nothing anywhere but the model download the user asked for."""

from __future__ import annotations

import sys

_CONVERTER = ("openvino.tools.ovc.telemetry_utils", "openvino.tools.ovc.convert_impl", "openvino.tools.ovc.utils")


def telemetry_off() -> None:
    """Keep OpenVINO's model converter from sending usage telemetry.

    `import openvino` loads the converter, which sets up Google Analytics
    telemetry unless the user opted out: it writes ~/intel/openvino_ga_cid at
    once and reports every `convert_model`. The converter falls back to a
    do-nothing stub when `openvino_telemetry` cannot be imported, so that
    import is made to fail for this process, before streamdet imports
    openvino. Converter modules a host program loaded before streamdet get the
    stub put in place of what they took.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    loaded = [name for name in _CONVERTER if name in sys.modules]
    if loaded:
        from openvino.tools.ovc import telemetry_stub

        for name in loaded:
            sys.modules[name].tm = telemetry_stub
