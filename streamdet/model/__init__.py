"""The detection model: finding, converting and reading the IR (`fetch`, `ir`), the devices and precisions
it runs on (`devices`, `precision`), the compiled detector (`detector`), reading its outputs into
Detections (`readout`), and the tools around it: `export` (for an inference server), `quantize` with
`calibration`, and `agreement` with `check` (how a variant detects next to the f32 reference)."""
