"""The TF Object Detection API's preprocessor, taken out of a graph that is fed frames at its input size.

The frozen graph resizes every image of the batch to the network's size
inside a `tf.map_fn`: a TensorArray scatter, then a Loop whose body is one
Interpolate, and the batch's true image shapes as a second output. streamdet
resizes each frame with OpenCV before it reaches the model, so for the batch
of one it feeds, that Interpolate maps 300x300 to 300x300: the identity. The
Loop still costs a copy of the image through a dynamic TensorArray on every
frame. The old Model Optimizer cut this block out of OMZ's IRs for the same
reason (its ObjectDetectionAPI preprocessor replacement).
"""

from __future__ import annotations

import numpy as np
import openvino as ov

# What the preprocessor's loop body is made of besides its one Interpolate: TensorArray bookkeeping.
_BOOKKEEPING = {"Constant", "Parameter", "Result", "Add", "Less", "ShapeOf", "Gather", "Concat", "Broadcast",
                "ScatterUpdate", "Unsqueeze", "Squeeze", "Reshape", "LogicalAnd"}


def _image_of(loop: ov.Node) -> ov.Output | None:
    """The image the loop resizes, when resizing it changes nothing; else None."""
    if loop.get_output_size() != 2:
        return None
    resized, shapes = loop.outputs()
    size = resized.get_partial_shape()
    if size.is_dynamic or len(size) != 4 or size[0].get_length() != 1:
        return None  # a batch of one image, of a known size
    if shapes.get_partial_shape() != ov.PartialShape([1, 3]):
        return None
    body = loop.get_function().get_ordered_ops()
    interpolations = [op for op in body if op.get_type_name() == "Interpolate"]
    if len(interpolations) != 1 or any(op.get_type_name() not in _BOOKKEEPING | {"Interpolate"} for op in body):
        return None
    resize = interpolations[0]
    if resize.get_input_partial_shape(0) != resize.get_output_partial_shape(0) or resize.get_attributes().get("antialias"):
        return None
    # The batch goes in through a TensorArray: a scatter of the image into a buffer of its own shape.
    for port in loop.inputs():
        scatter = port.get_source_output().get_node()
        if port.get_partial_shape() == size and scatter.get_type_name() == "ScatterNDUpdate":
            image = scatter.input_value(2)
            if image.get_partial_shape() == size and image.get_element_type() == resized.get_element_type():
                return image
    return None


def drop_identity_resize(model: ov.Model) -> bool:
    """Bypass the preprocessor's loop where it is the identity (in place); True if it was there."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Loop":
            continue
        image = _image_of(op)
        if image is None:
            continue
        resized, shapes = op.outputs()
        true_shape = [d.get_length() for d in resized.get_partial_shape()][1:]
        resized.replace(image)
        shapes.replace(ov.op.Constant(np.array([true_shape], dtype=shapes.get_element_type().to_dtype())).output(0))
        model.validate_nodes_and_infer_types()
        return True
    return False
