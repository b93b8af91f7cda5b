"""`streamdet bench`: the pipeline against raw inference (`pipeline`), cameras per machine (`capacity`),
local against a server (`remote`), their synthetic inputs (`inputs`) and what they share (`common`)."""
