"""A fitted run -> one ONNX file: raw feature columns in, every `dlrun predict` column out.

The graph is three parts joined by name:
  preprocessing (built here with standard and ai.onnx.ml operators, in float64 as the Preprocessor computes):
      a number column (N,) double, NaN for missing -> filled, scaled (standard, minmax, robust with smooth clipping,
      quantile) -> (N, 1); a text column (N,) string -> category code by LabelEncoder -> one-hot block or embedding
      code; missing indicators after the one-hot blocks, embedding codes last; concatenated, cast to float32 -> X
  the network, exported by torch.onnx (X (N, n_features) -> one logits or scaled-value tensor per target)
  postprocessing: softmax probabilities and the class label by Gather; regression values back in original units.

Inputs take the values as dlrun reads a cell: a yes/no column as 1/0, a date as a fractional year, an ordinal as its
rank, "$52,000" as 52000 (the sidecar says which). Text is matched to the spellings training saw (every merged
spelling included); other spellings count as unseen, as the sidecar notes.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from onnx import TensorProto, checker, helper

from dlrun.core.errors import DataError
from dlrun.data.cells import TEXT_MISSING
from dlrun.data.preprocess import Preprocessor
from dlrun.data.scaling import _CLIP_UNIFORM  # the uniform level's bounds before the normal quantile
from dlrun.export.graph import ML_DOMAIN, GraphBuilder
from dlrun.run.outputs import pred_column, proba_column

OPSET = 18  # ONNX Runtime 1.17 and later run it
ML_OPSET = 3
IR_VERSION = 10  # what ONNX Runtime reads (the onnx package writes newer by default)
NETWORK_INPUT = "dlrun/X"


def build_onnx(prep: Preprocessor, model) -> bytes:
    """The serialised ONNX model of a fitted preprocessor and its network (in eval mode, on the CPU)."""
    builder = GraphBuilder("pre")
    inputs = _preprocessing(builder, prep)
    network = _network(model, prep)
    post = GraphBuilder("post")
    outputs = _postprocessing(post, prep, [f"net/{target}" for target in prep.targets])
    graph = helper.make_graph(
        builder.nodes + list(network.node) + post.nodes, "dlrun",
        inputs, outputs, initializer=builder.initializers + list(network.initializer) + post.initializers)
    onnx_model = helper.make_model(graph, ir_version=IR_VERSION, producer_name="dlrun",
                                   opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ML_DOMAIN, ML_OPSET)])
    checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


def _preprocessing(b: GraphBuilder, prep: Preprocessor) -> list:
    """The graph inputs, and the nodes from them to NETWORK_INPUT."""
    inputs, numeric, missing = {}, [], {}
    for column in prep.numeric_features:
        inputs[column] = helper.make_tensor_value_info(column, TensorProto.DOUBLE, ["N"])
        missing[column] = b.op("Or", b.op("IsNaN", column), b.op("IsInf", column))
        state = prep.numeric_scaling(column)
        filled = b.op("Where", missing[column], b.const(state["fill"]), column)
        numeric.append(_scaled(b, filled, state))
    onehot, embedded = [], []
    for column in prep.categorical_features:
        inputs[column] = helper.make_tensor_value_info(column, TensorProto.STRING, ["N"])
        categories, fill, embed = prep.category_encoding(column)
        code = _category_code(b, column, categories, fill, _spellings(prep, column, categories))
        if embed:  # 0 = unseen, 1.. = the kept categories
            embedded.append(b.op("Cast", b.add(code, b.const(1, np.int64)), to=TensorProto.DOUBLE))
        else:  # (N, 1) == (n_categories,) -> (N, n_categories); an unseen category (-1) is all zeros
            column_code = b.op("Unsqueeze", code, b.const([1], np.int64))
            onehot.append(b.op("Cast", b.op("Equal", column_code, b.const(np.arange(len(categories)), np.int64)),
                               to=TensorProto.DOUBLE))
    indicators = [b.op("Cast", missing[column], to=TensorProto.DOUBLE) for column in prep.missing_indicator_columns]
    as_column = lambda x: b.op("Unsqueeze", x, b.const([1], np.int64))  # noqa: E731  (N,) -> (N, 1)
    blocks = [as_column(x) for x in numeric] + onehot + [as_column(x) for x in indicators + embedded]
    X = b.op("Concat", *blocks, axis=1)  # (N, n_features_out) in the order transform_features writes
    b.op("Cast", X, output=NETWORK_INPUT, to=TensorProto.FLOAT)  # float32, as transform_features returns
    return [inputs[column] for column in prep.features]  # in the table's column order


def _scaled(b: GraphBuilder, filled: str, state: dict[str, Any]) -> str:
    """apply_scaler of scaling.py as graph operators."""
    if "quantiles" in state:
        quantiles = state["quantiles"]
        uniform = b.interp(filled, quantiles, np.linspace(0.0, 1.0, len(quantiles)).tolist(), ties_to_middle=True)
        clipped = b.op("Min", b.op("Max", uniform, b.const(_CLIP_UNIFORM)), b.const(1 - _CLIP_UNIFORM))
        return b.normal_ppf(clipped)
    scaled = b.op("Div", b.op("Sub", filled, b.const(state["center"])), b.const(state["scale"]))
    if "clip" in state:  # x / sqrt(1 + (x / clip)^2)
        ratio = b.mul(scaled, 1.0 / state["clip"])
        scaled = b.op("Div", scaled, b.op("Sqrt", b.add(b.op("Mul", ratio, ratio), 1.0)))
    return scaled


def _spellings(prep: Preprocessor, column: str, categories: list[str]) -> dict[str, int]:
    """Every spelling training read as a kept category -> its code: the category itself and the spellings merged
    into it (another case of it)."""
    decision = prep.columns.get(column)
    codes = {category: i for i, category in enumerate(categories)}
    for canonical, others in (decision.merged.items() if decision else []):
        for other in others:
            if canonical in codes:
                codes.setdefault(other, codes[canonical])
    return codes


def _category_code(b: GraphBuilder, column: str, categories: list[str], fill: str, spellings: dict[str, int]) -> str:
    """(N,) int64 code of each cell: its category, the fill category for a missing cell, -1 for anything unseen."""
    words = sorted({variant for word in TEXT_MISSING for variant in (word, word.upper(), word.title())})
    is_missing = b.op("LabelEncoder", column, domain=ML_DOMAIN, keys_strings=words, values_int64s=[1] * len(words),
                      default_int64=0)
    code = b.op("LabelEncoder", column, domain=ML_DOMAIN, keys_strings=list(spellings),
                values_int64s=list(spellings.values()), default_int64=-1)
    fill_code = categories.index(fill) if fill in categories else -1
    return b.op("Where", b.op("Cast", is_missing, to=TensorProto.BOOL), b.const(fill_code, np.int64), code)


def _network(model, prep: Preprocessor):
    """The torch network as an ONNX graph: NETWORK_INPUT -> net/<target>, batch size free."""
    import onnx
    import torch

    class Outputs(torch.nn.Module):  # the model returns a dict; the exporter wants a tuple
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, X):
            outputs = self.network(X)
            return tuple(outputs[target] for target in prep.targets)

    names = [f"net/{target}" for target in prep.targets]
    buffer = io.BytesIO()
    example = torch.zeros(2, len(prep.feature_names_), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: it needs no onnxscript
        torch.onnx.export(Outputs(model.cpu().eval()), (example,), buffer, input_names=[NETWORK_INPUT],
                          output_names=names, dynamic_axes={NETWORK_INPUT: {0: "N"}, **{n: {0: "N"} for n in names}},
                          opset_version=OPSET, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    _prefix_names(graph, keep={NETWORK_INPUT, *names})
    return graph


def _prefix_names(graph, keep: set[str]) -> None:
    """The network's internal tensors under net/, so no name can meet one of the feature columns."""
    rename = lambda name: name if not name or name in keep else f"net/{name}"  # noqa: E731
    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name)
    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)


def _postprocessing(b: GraphBuilder, prep: Preprocessor, network_outputs: list[str]) -> list:
    outputs = []
    for target, logits in zip(prep.targets, network_outputs):
        if prep.is_classification(target):
            classes = prep.classes(target)
            proba = b.op("Softmax", logits, axis=1)  # (N, n_classes) float32, as prediction_frame
            label_type, label_values, dtype = _label_table(classes)
            b.op("Gather", b.const(label_values, dtype), b.op("ArgMax", proba, axis=1, keepdims=0),
                 axis=0, output=pred_column(target))
            outputs.append(helper.make_tensor_value_info(pred_column(target), label_type, ["N"]))
            for k, label in enumerate(classes):
                name = proba_column(target, label)
                b.op("Gather", proba, b.const(k, np.int64), axis=1, output=name)
                outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"]))
        else:
            scaled = b.op("Cast", b.op("Squeeze", logits, b.const([1], np.int64)), to=TensorProto.DOUBLE)
            state = prep.target_scaling(target)
            if "quantiles" in state:
                uniform = b.normal_cdf(scaled)
                quantiles = state["quantiles"]
                value = b.interp(uniform, np.linspace(0.0, 1.0, len(quantiles)).tolist(), quantiles)
            else:
                value = b.add(b.mul(scaled, state["std"]), state["mean"])
            b.op("Identity", value, output=pred_column(target))
            outputs.append(helper.make_tensor_value_info(pred_column(target), TensorProto.DOUBLE, ["N"]))
    return outputs


def _label_table(classes: list) -> tuple[int, list, Any]:
    """How a target's class labels are stored in the graph: int64, bool, double or text (mixed kinds: text)."""
    kinds = {type(label) for label in classes}
    if kinds == {bool}:
        return TensorProto.BOOL, classes, np.bool_
    if kinds <= {int}:
        return TensorProto.INT64, classes, np.int64
    if kinds <= {int, float}:
        return TensorProto.DOUBLE, [float(c) for c in classes], np.float64
    return TensorProto.STRING, [str(c) for c in classes], str


INTERNAL_PREFIXES = ("pre/", "post/", "net/", "dlrun/")  # the graph's own tensor names start so


def require_exportable(prep: Preprocessor) -> None:
    """Column names must be usable as graph input and output names; the rest of a fitted run always exports."""
    names = prep.features + [pred_column(t) for t in prep.targets]
    if len(set(names)) != len(names):
        raise DataError("a feature column has the name of a prediction column; rename it to export the run")
    internal = [name for name in names if name.startswith(INTERNAL_PREFIXES)]
    if internal:
        raise DataError(f"column {internal[0]!r} starts like the ONNX graph's own names "
                        f"({', '.join(INTERNAL_PREFIXES)}); rename it to export the run")
