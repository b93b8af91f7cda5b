"""A KServe v2 gRPC inference server on loopback, for tests/test_remote.py (run as a subprocess).

KServe's own Python model server code answers the protocol (its InferenceServicer
and DataPlane, from the `kserve` package); the model is an OpenVINO IR compiled
on the CPU as OpenVINO Model Server compiles what it serves. The gRPC server is
wired here rather than by kserve.ModelServer because that one listens on every
address, with no TLS: this one binds 127.0.0.1, and takes a certificate
(--cert/--key) and a bearer token (--token, checked on every call, as a proxy
in front of OVMS would) when asked.

    python tests/kserve_server.py --port 8701 --model ped=models/ped/1/model.xml [--model NAME=XML ...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from concurrent import futures

import grpc
import numpy as np
import openvino as ov
from grpc import aio
from kserve import Model
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

_DATATYPES = {"u8": "UINT8", "f32": "FP32", "f16": "FP16", "i32": "INT32", "i64": "INT64"}


def _describe(port: ov.Output) -> dict:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return {"name": port.any_name, "datatype": _DATATYPES[port.get_element_type().get_type_name()], "shape": shape}


class IrModel(Model):
    """One IR, compiled once; requests run concurrently on an AsyncInferQueue like OVMS's request pool."""

    def __init__(self, name: str, xml: str):
        super().__init__(name)
        core = ov.Core()
        # f32 as streamdet's local default, so both infer alike (OVMS: --plugin_config
        # '{"INFERENCE_PRECISION_HINT": "f32"}'); left alone, a CPU with BF16 or AMX would run bf16.
        self.compiled = core.compile_model(core.read_model(xml), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                         "INFERENCE_PRECISION_HINT": "f32"})
        self.queue = ov.AsyncInferQueue(self.compiled, 0)
        self.queue.set_callback(self._done)
        self.starter = futures.ThreadPoolExecutor(max_workers=1)  # start_async is for one thread at a time
        self.ready = True

    def get_input_types(self) -> list[dict]:
        return [_describe(p) for p in self.compiled.inputs]

    def get_output_types(self) -> list[dict]:
        return [_describe(p) for p in self.compiled.outputs]

    @staticmethod
    def _done(request: ov.InferRequest, userdata) -> None:
        loop, future = userdata
        outputs = [request.get_tensor(port).data.copy() for port in request.model_outputs]
        loop.call_soon_threadsafe(future.set_result, outputs)

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        data = payload.inputs[0].as_numpy()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # start_async blocks while every request is busy: off the event loop, so health calls stay answered.
        inputs = {0: np.ascontiguousarray(data)}
        await loop.run_in_executor(self.starter, self.queue.start_async, inputs, (loop, future))
        arrays = await future
        outputs = [InferOutput(name=port.any_name, shape=list(array.shape), datatype=_describe(port)["datatype"],
                               data=array) for port, array in zip(self.compiled.outputs, arrays)]
        # numpy outputs go back as raw bytes (raw_output_contents), as OVMS sends them
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=outputs)


class TokenCheck(aio.ServerInterceptor):
    """Every call must carry `authorization: Bearer TOKEN`, else UNAUTHENTICATED (what a proxy would answer)."""

    def __init__(self, token: str):
        self.expected = f"Bearer {token}"

    async def intercept_service(self, continuation, details):
        if dict(details.invocation_metadata or ()).get("authorization") == self.expected:
            return await continuation(details)

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        return grpc.unary_unary_rpc_method_handler(refuse)


async def serve(args: argparse.Namespace) -> None:
    repository = ModelRepository()
    for spec in args.model:
        name, xml = spec.split("=", 1)
        repository.update(IrModel(name, xml))
    servicer = InferenceServicer(DataPlane(repository), ModelRepositoryExtension(repository))
    server = aio.server(futures.ThreadPoolExecutor(max_workers=4),
                        interceptors=[TokenCheck(args.token)] if args.token else [])
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{args.port}"
    if args.cert:
        with open(args.key, "rb") as key, open(args.cert, "rb") as cert:
            server.add_secure_port(address, grpc.ssl_server_credentials([(key.read(), cert.read())]))
    else:
        server.add_insecure_port(address)
    await server.start()
    print(f"serving on {address}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=XML")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--token")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
