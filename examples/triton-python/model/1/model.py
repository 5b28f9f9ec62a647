"""Triton Python-backend model: element-wise sum and difference of two FP32 vectors.

OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, each of shape [4]
(see ../config.pbtxt). Triton loads this file as version 1 of the model and
calls TritonPythonModel.initialize once, execute for every batch of requests,
and finalize on unload. triton_python_backend_utils and numpy are provided by
the Triton server image.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """The class name and its three methods are the Python backend's interface."""

    def initialize(self, args):
        """Reads the output data types from the model configuration Triton passes in."""
        config = json.loads(args["model_config"])
        self.dtypes = {}
        for name in ("OUTPUT0", "OUTPUT1"):
            output = pb_utils.get_output_config_by_name(config, name)
            self.dtypes[name] = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        """Answers each request with the sum and difference of its inputs, in order."""
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if in0.shape != in1.shape:
                # Triton checks each shape against the config; this guards the pair.
                error = pb_utils.TritonError(f"INPUT0 has shape {in0.shape} but INPUT1 has {in1.shape}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out0 = pb_utils.Tensor("OUTPUT0", np.add(in0, in1).astype(self.dtypes["OUTPUT0"]))
            out1 = pb_utils.Tensor("OUTPUT1", np.subtract(in0, in1).astype(self.dtypes["OUTPUT1"]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out0, out1]))
        # One response per request, in the same order.
        return responses

    def finalize(self):
        """Nothing to release: the model holds no files, threads or GPU memory."""
        self.dtypes = None
