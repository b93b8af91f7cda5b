"""`streamdet bench`: the pipeline against raw inference (`pipeline`), cameras per machine (`capacity`),
the same setting by setting of `detect.fps`, motion gate and sub-stream (`ladder`), local against a server
(`remote`), their synthetic inputs (`inputs`) and what they share (`common`)."""
