"""A linear model, y = W·x + b, served by MLServer as a custom runtime.

MLServer imports this module by the "implementation" of model-settings.json
("models.LinearModel"): it puts the model directory on sys.path, so the module
is found next to model-settings.json. The weights come from weights.json, named
by parameters.uri in model-settings.json.

The arithmetic lives in plain functions (load_weights, rows_of, linear) that
need only the standard library, so test_models.py can check them on a machine
without MLServer.
"""

from __future__ import annotations

import json
import math

try:
    from mlserver import MLModel
    from mlserver.errors import MLServerError
    from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
    from mlserver.utils import get_model_uri

    MLSERVER_INSTALLED = True
except ImportError:
    # MLServer is not installed: we are being imported by test_models.py (or
    # by hand) to check the arithmetic. Define stand-ins so the module still
    # imports. MLServer itself never takes this branch. The stand-in MLModel
    # keeps only what LinearModel uses (the settings, name and version);
    # the tests swap in stand-ins for the request/response types too.
    MLSERVER_INSTALLED = False

    class MLModel:  # type: ignore[no-redef]
        """Stand-in for mlserver.MLModel when MLServer is not installed."""

        def __init__(self, settings):
            self._settings = settings
            self.ready = False

        @property
        def name(self):
            return self._settings.name

        @property
        def version(self):
            params = self._settings.parameters
            return params.version if params is not None else None

    MLServerError = ValueError  # type: ignore[misc,assignment]
    InferenceRequest = InferenceResponse = ResponseOutput = None  # type: ignore[misc,assignment]
    get_model_uri = None  # type: ignore[assignment]

INPUT_NAME = "x"
OUTPUT_NAME = "y"
DATATYPE = "FP32"


def load_weights(path: str) -> tuple[list[list[float]], list[float]]:
    """Reads {"weights": [[...], ...], "bias": [...]} from the JSON file at path.

    weights has one row per output and one column per input; bias has one
    entry per output. Raises ValueError when the shapes disagree or a value
    is not a finite number.
    """
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "weights" not in doc or "bias" not in doc:
        raise ValueError(f"{path}: want an object with \"weights\" and \"bias\"")
    weights, bias = doc["weights"], doc["bias"]
    if not isinstance(weights, list) or not weights or not all(isinstance(r, list) for r in weights):
        raise ValueError(f"{path}: \"weights\" must be a non-empty list of rows")
    n_in = len(weights[0])
    if n_in == 0 or any(len(r) != n_in for r in weights):
        raise ValueError(f"{path}: every row of \"weights\" must have the same, non-zero length")
    if not isinstance(bias, list) or len(bias) != len(weights):
        raise ValueError(f"{path}: \"bias\" must have {len(weights)} entries, one per row of \"weights\"")
    weights = [[_number(v, path) for v in row] for row in weights]
    bias = [_number(v, path) for v in bias]
    return weights, bias


def _number(v, where: str) -> float:
    # bool is an int in Python; a JSON true is not a weight.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: {v!r} is not a finite number")
    return float(v)


def rows_of(shape: list[int], data, n_in: int) -> list[list[float]]:
    """Turns a V2 tensor (shape, row-major data, flat or nested) into rows of n_in values.

    The shape must be [n_in] (one row) or [batch, n_in]. Raises ValueError
    otherwise, or when data does not hold exactly the values the shape says.
    """
    flat = list(_flatten(data))
    if len(shape) == 1:
        shape = [1, shape[0]]
    if len(shape) != 2 or shape[1] != n_in or shape[0] < 0:
        raise ValueError(f"input {INPUT_NAME!r} must have shape [batch, {n_in}], not {list(shape)}")
    if len(flat) != shape[0] * n_in:
        raise ValueError(f"input {INPUT_NAME!r} has {len(flat)} values; shape {list(shape)} needs {shape[0] * n_in}")
    values = [_number(v, f"input {INPUT_NAME!r}") for v in flat]
    return [values[i : i + n_in] for i in range(0, len(values), n_in)]


def _flatten(data):
    for v in data:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def linear(weights: list[list[float]], bias: list[float], rows: list[list[float]]) -> list[list[float]]:
    """Computes y = W·x + b for every row x; returns one row of len(bias) values per input row."""
    n_in = len(weights[0])
    out = []
    for x in rows:
        if len(x) != n_in:
            raise ValueError(f"a row has {len(x)} values; the model takes {n_in}")
        out.append([sum(w * v for w, v in zip(w_row, x)) + b for w_row, b in zip(weights, bias)])
    return out


class LinearModel(MLModel):
    """MLServer runtime: input "x" FP32 [batch, n_in] -> output "y" FP32 [batch, n_out]."""

    async def load(self) -> bool:
        # parameters.uri is resolved relative to model-settings.json.
        path = await get_model_uri(self._settings)
        self._weights, self._bias = load_weights(path)
        # Older MLServer releases read the ready flag; newer ones the return value.
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = [i for i in payload.inputs if i.name == INPUT_NAME]
        if len(inputs) != 1:
            raise MLServerError(f"the request needs exactly one input named {INPUT_NAME!r}")
        tensor = inputs[0]
        # Some MLServer releases type datatype as a str, others as an Enum.
        datatype = getattr(tensor.datatype, "value", tensor.datatype)
        if datatype != DATATYPE:
            raise MLServerError(f"input {INPUT_NAME!r} must be {DATATYPE}, not {datatype}")
        try:
            rows = rows_of(list(tensor.shape), tensor.data, len(self._weights[0]))
            ys = linear(self._weights, self._bias, rows)
        except ValueError as err:
            raise MLServerError(str(err)) from err
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                ResponseOutput(
                    name=OUTPUT_NAME,
                    shape=[len(ys), len(self._bias)],
                    datatype=DATATYPE,
                    data=[v for y in ys for v in y],
                )
            ],
        )
