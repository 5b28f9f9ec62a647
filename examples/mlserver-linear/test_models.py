"""Tests of models.py that need only the Python standard library.

Run from anywhere: python3 test_models.py
They check the arithmetic, the validation of weights and inputs, that
model-settings.json agrees with weights.json and models.py, and (when MLServer
is not installed) the load/predict glue with stand-in request/response types.
"""

import asyncio
import json
import os
import sys
import tempfile
import unittest
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import models  # noqa: E402  (after the path is set)


def write_json(doc) -> str:
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    with f:
        json.dump(doc, f)
    return f.name


class LinearTest(unittest.TestCase):
    def setUp(self):
        self.weights, self.bias = models.load_weights(os.path.join(HERE, "weights.json"))

    def test_shipped_weights(self):
        self.assertEqual(len(self.weights), 2)  # outputs
        self.assertEqual(len(self.weights[0]), 3)  # inputs
        self.assertEqual(len(self.bias), 2)

    def test_known_values(self):
        # W = [[0.5, -1, 2], [1.5, 0.25, 0]], b = [0.5, -1]
        got = models.linear(self.weights, self.bias, [[1, 2, 3], [4, 5, 6], [0, 0, 0]])
        self.assertEqual(got, [[5.0, 1.0], [9.5, 6.25], [0.5, -1.0]])

    def test_identity(self):
        w = [[1.0, 0.0], [0.0, 1.0]]
        self.assertEqual(models.linear(w, [0.0, 0.0], [[3.5, -2.0]]), [[3.5, -2.0]])

    def test_row_of_wrong_length(self):
        with self.assertRaises(ValueError):
            models.linear(self.weights, self.bias, [[1, 2]])

    def test_rows_flat_nested_and_single(self):
        self.assertEqual(models.rows_of([2, 3], [1, 2, 3, 4, 5, 6], 3), [[1, 2, 3], [4, 5, 6]])
        self.assertEqual(models.rows_of([2, 3], [[1, 2, 3], [4, 5, 6]], 3), [[1, 2, 3], [4, 5, 6]])
        self.assertEqual(models.rows_of([3], [7, 8, 9], 3), [[7, 8, 9]])
        self.assertEqual(models.rows_of([0, 3], [], 3), [])

    def test_rows_rejects_bad_tensors(self):
        bad = [
            ([2, 2], [1, 2, 3, 4]),  # wrong number of columns
            ([2, 3], [1, 2, 3]),  # too few values
            ([1, 3], [1, 2, "x"]),  # not a number
            ([1, 3], [1, 2, True]),  # a bool is not a number
            ([1, 3], [1, 2, float("nan")]),  # not finite
            ([1, 1, 3], [1, 2, 3]),  # three dimensions
        ]
        for shape, data in bad:
            with self.subTest(shape=shape, data=data), self.assertRaises(ValueError):
                models.rows_of(shape, data, 3)

    def test_load_weights_rejects_bad_files(self):
        bad = [
            [],  # not an object
            {"weights": [[1, 2]]},  # no bias
            {"weights": [[1, 2], [3]], "bias": [0, 0]},  # ragged
            {"weights": [[1, 2]], "bias": [0, 0]},  # bias too long
            {"weights": [[]], "bias": [0]},  # no inputs
            {"weights": [[1, "2"]], "bias": [0]},  # not a number
        ]
        for doc in bad:
            path = write_json(doc)
            self.addCleanup(os.remove, path)
            with self.subTest(doc=doc), self.assertRaises(ValueError):
                models.load_weights(path)


class SettingsTest(unittest.TestCase):
    def test_settings_agree_with_model(self):
        with open(os.path.join(HERE, "model-settings.json"), encoding="utf-8") as f:
            settings = json.load(f)
        module, _, cls = settings["implementation"].rpartition(".")
        self.assertEqual(module, "models")
        self.assertTrue(hasattr(models, cls), f"models.py has no class {cls}")
        weights, bias = models.load_weights(os.path.join(HERE, settings["parameters"]["uri"]))
        (inp,) = settings["inputs"]
        (out,) = settings["outputs"]
        self.assertEqual((inp["name"], inp["datatype"], inp["shape"][-1]), (models.INPUT_NAME, "FP32", len(weights[0])))
        self.assertEqual((out["name"], out["datatype"], out["shape"][-1]), (models.OUTPUT_NAME, "FP32", len(bias)))


@unittest.skipIf(models.MLSERVER_INSTALLED, "MLServer is installed: the stand-ins are not in use")
class GlueTest(unittest.TestCase):
    """Runs LinearModel.load and predict with stand-ins for MLServer's types."""

    def setUp(self):
        async def get_model_uri(settings):
            return os.path.join(HERE, settings.parameters.uri)

        saved = {n: getattr(models, n) for n in ("get_model_uri", "InferenceResponse", "ResponseOutput")}
        self.addCleanup(lambda: [setattr(models, n, v) for n, v in saved.items()])
        models.get_model_uri = get_model_uri
        models.InferenceResponse = lambda **kw: kw
        models.ResponseOutput = lambda **kw: kw
        settings = SimpleNamespace(name="model", parameters=SimpleNamespace(uri="./weights.json", version="v1"))
        self.model = models.LinearModel(settings)
        self.assertTrue(asyncio.run(self.model.load()))

    def request(self, name="x", datatype="FP32", shape=(2, 3), data=(1, 2, 3, 4, 5, 6)):
        tensor = SimpleNamespace(name=name, datatype=datatype, shape=list(shape), data=list(data))
        return SimpleNamespace(id="req-1", inputs=[tensor])

    def test_predict(self):
        resp = asyncio.run(self.model.predict(self.request()))
        self.assertEqual(resp["model_name"], "model")
        self.assertEqual(resp["model_version"], "v1")
        self.assertEqual(resp["id"], "req-1")
        (out,) = resp["outputs"]
        self.assertEqual(out, {"name": "y", "shape": [2, 2], "datatype": "FP32", "data": [5.0, 1.0, 9.5, 6.25]})

    def test_predict_accepts_enum_datatype(self):
        import enum

        datatype = enum.Enum("Datatype", {"FP32": "FP32"}).FP32
        resp = asyncio.run(self.model.predict(self.request(datatype=datatype, shape=(3,), data=(1, 2, 3))))
        self.assertEqual(resp["outputs"][0]["data"], [5.0, 1.0])

    def test_predict_rejects(self):
        for req in (self.request(name="z"), self.request(datatype="INT64"), self.request(shape=(2, 2))):
            with self.subTest(req=req), self.assertRaises(ValueError):
                asyncio.run(self.model.predict(req))


if __name__ == "__main__":
    unittest.main()
