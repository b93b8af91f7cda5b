"""Where frames are inferred: the engine protocol the scheduler speaks (`base`), the local OpenVINO
engine (`local`), the KServe v2 server engine (`remote`), and the one place that picks between them
(`backend`)."""
