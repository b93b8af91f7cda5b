"""Device checks against this machine's real OpenVINO devices (a CPU, no GPU or NPU)."""

from __future__ import annotations

import openvino as ov
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from media import clip

from streamdet.model.devices import check_device, cpu_role, describe_devices
from streamdet.errors import ConfigError, DeviceError
from streamdet.config.sections import InferenceConfig
from streamdet.engines.backend import requests_in_flight
from streamdet.model.detector import _device_config, load

CORE = ov.Core()
PRESENT = ", ".join(CORE.available_devices)
MYRIAD_GONE = "MYRIAD (Intel NCS2) was removed from OpenVINO in 2023.0 (last supported in 2022.3 LTS); devices present: "


@pytest.mark.unit
@pytest.mark.parametrize("device", ["CPU", "cpu", " CPU ", "AUTO", "AUTO:CPU", "auto:cpu", "MULTI:CPU", "HETERO:CPU",
                                    "BATCH:CPU(2)", "AUTO:-GPU,CPU"])
def test_present_devices_and_virtual_lists_are_accepted(device):
    check_device(CORE, device)


@pytest.mark.unit
@pytest.mark.parametrize("device", ["MYRIAD", "myriad", "AUTO:MYRIAD,CPU", "MULTI:CPU,MYRIAD", "HETERO:MYRIAD,CPU", "MYRIAD.1"])
def test_myriad_says_it_was_removed(device):
    with pytest.raises(DeviceError) as err:
        check_device(CORE, device)
    assert str(err.value) == MYRIAD_GONE + PRESENT


@pytest.mark.unit
@pytest.mark.parametrize("device", ["GPU", "NPU", "TPU", "AUTO:GPU,CPU", "CPU.1"])
def test_absent_devices_list_the_present_ones(device):
    if device.split(":")[-1].split(",")[0] in CORE.available_devices:
        pytest.skip(f"{device} exists on this machine")
    with pytest.raises(DeviceError, match=rf"is not present; devices present: {PRESENT}$"):
        check_device(CORE, device)


@pytest.mark.unit
def test_lists_without_members_and_empty_names():
    with pytest.raises(DeviceError, match=r"'HETERO' needs a device list, e.g. HETERO:CPU"):
        check_device(CORE, "HETERO")
    with pytest.raises(DeviceError, match="no device given"):
        check_device(CORE, " ")


class _CoreWithGpus:
    """Stand-in for ov.Core on a machine with two GPUs: none exists here, so this one check is faked."""

    available_devices = ["CPU", "GPU.0", "GPU.1"]


@pytest.mark.unit
def test_indexed_devices_must_exist_as_listed():
    core = _CoreWithGpus()
    for device in ("GPU", "GPU.1", "AUTO:GPU.1,CPU", "MULTI:GPU.0,GPU.1"):
        check_device(core, device)
    with pytest.raises(DeviceError, match=r"'GPU.2' is not present; devices present: CPU, GPU.0, GPU.1"):
        check_device(core, "GPU.2")


def test_load_compiles_on_a_lower_case_device(model_cache, pedestrian_xml):
    assert load(pedestrian_xml, "cpu", cache_dir=model_cache).compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert load(pedestrian_xml, "AUTO:CPU", cache_dir=model_cache, hint="LATENCY").form == "tf"


@pytest.mark.parametrize("device", ["AUTO", "AUTO:CPU", "MULTI:CPU", "HETERO:CPU", "BATCH:CPU"])
@pytest.mark.parametrize("hint", ["THROUGHPUT", "LATENCY"])
def test_virtual_devices_compile_and_find_the_person(device, hint, pedestrian_xml, carphone_frames):
    detector = load(pedestrian_xml, device, hint=hint)
    found = detector.detect(carphone_frames[0])
    assert found.labels[:1] == ("person",) and found.scores[0] > 0.9
    # requests in flight when nireq is 0: the device's optimal number, one more under THROUGHPUT
    assert requests_in_flight(InferenceConfig(), detector) == detector.optimal_nireq + (hint == "THROUGHPUT")


@pytest.mark.unit
def test_cpu_streams_and_threads_reach_the_cpu_inside_virtual_devices():
    assert [cpu_role(d) for d in ("CPU", "cpu", "BATCH:CPU(4)", "AUTO", "AUTO:-GPU", "AUTO:GPU,CPU", "MULTI:CPU",
                                  "HETERO:GPU,CPU.0")] == ["direct"] * 3 + ["member"] * 5
    assert [cpu_role(d) for d in ("GPU", "NPU", "AUTO:GPU", "AUTO:-CPU", "MULTI:GPU.0,GPU.1", "BATCH:GPU")] == [None] * 6
    assert _device_config("AUTO:GPU,CPU", "THROUGHPUT", 2, 1) == {
        "PERFORMANCE_HINT": "THROUGHPUT", "DEVICE_PROPERTIES": {"CPU": {"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "1"}}}
    assert _device_config("GPU", "LATENCY", 0, 0) == {"PERFORMANCE_HINT": "LATENCY"}
    with pytest.raises(ConfigError, match="device GPU does not use the CPU; set them to 0"):
        _device_config("GPU", "THROUGHPUT", 2, None)


@pytest.mark.parametrize("device, batch", [("AUTO", 1), ("MULTI:CPU", 1), ("HETERO:CPU", 1), ("BATCH:CPU(2)", 2)])
def test_virtual_devices_run_the_cpu_streams_asked_for(device, batch, model_cache, pedestrian_xml):
    # The CPU's streams are what the device reports it wants fed (before this, AUTO ignored them).
    for streams in (1, 2):
        assert load(pedestrian_xml, device, cache_dir=model_cache, streams=streams).optimal_nireq == streams * batch


def test_hetero_through_the_cli(model_cache, pedestrian_xml, tmp_path):
    proc = streamdet("run", "--source", str(clip("carphone_pristine")), "--model", str(pedestrian_xml),
                     "--device", "HETERO:CPU", "--json", str(tmp_path / "d.jsonl"), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d.jsonl").read_text().count("\n") == 120
    info = streamdet("model", "info", str(pedestrian_xml), "--device", "hetero:cpu", env=cli_env(model_cache))
    assert info.returncode == 0 and "HETERO:CPU" in info.stdout, info.stderr


@pytest.mark.unit
def test_devices_command_lists_cpu_with_its_full_name(tmp_path):
    proc = streamdet("devices", env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = dict(line.split("\t") for line in proc.stdout.splitlines())
    assert rows["CPU"] == CORE.get_property("CPU", "FULL_DEVICE_NAME") and rows["CPU"]
    assert dict(describe_devices(CORE)) == rows


def test_bad_devices_are_one_line_cli_errors(model_cache, pedestrian_xml):
    env = cli_env(model_cache)
    src = str(clip("carphone_pristine"))
    for device, fragments in [
        ("TPU", ["'TPU' is not present", "devices present: CPU"]),
        ("MYRIAD", ["MYRIAD (Intel NCS2)", "2023.0", "devices present: CPU"]),
        ("AUTO:MYRIAD", ["MYRIAD", "2022.3 LTS"]),
    ]:
        assert_one_line_error(streamdet("run", "--source", src, "--model", str(pedestrian_xml), "--device", device, env=env),
                              *fragments)
    assert_one_line_error(streamdet("model", "info", str(pedestrian_xml), "--device", "myriad", env=env), "MYRIAD")
