"""A small builder for ONNX graphs made of standard operators, and the numeric functions dlrun's scaling needs that
ONNX lacks: piecewise-linear interpolation (np.interp), the normal quantile function (scipy's ndtri) and the normal
CDF in double precision (ONNX Runtime's Erf is float only).

Every value here is float64 unless said otherwise: preprocessing runs in double, as the Preprocessor does in numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ML_DOMAIN = "ai.onnx.ml"

# Wichura's AS241 rational approximations of the normal quantile, accurate to about 1e-16 (Applied Statistics 37,
# 1988): one for |p - 0.5| <= 0.425, one for tails down to exp(-25) (~1.4e-11). dlrun clips the uniform level at 1e-7
# (scaling.py), well inside that range.
_AS241_CENTRAL = ([3.3871328727963666080, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125,
                   45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727],
                  [1.0, 42.313330701600911252, 687.18700749205790830, 5394.1960214247511077, 21213.794301586595867,
                   39307.895800092710610, 28729.085735721942674, 5226.4952788528545610])
_AS241_TAIL = ([1.42343711074968357734, 4.63033784615654529590, 5.76949722146069140550, 3.64784832476320460504,
                1.27045825245236838258, 0.241780725177450611770, 0.0227238449892691845833, 0.000774545014278341407640],
               [1.0, 2.05319162663775882187, 1.67638483018380384940, 0.689767334985100004550, 0.148103976427480074590,
                0.0151986665636164571966, 0.000547593808499534494600, 1.05075007164441684324e-9])
_TAIL_FLOOR = 1.4e-11  # exp(-25): AS241's tail branch holds above it; interpolated levels below it change nothing visible
_NEWTON_STEPS = 4  # float Erf's start (a few % off in the far tail) to double precision


class GraphBuilder:
    """Nodes and constants in the order they are added (which is topological, since each uses earlier names)."""

    def __init__(self, prefix: str = "dlrun"):
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self._names = itertools.count()

    def name(self, hint: str = "t") -> str:
        return f"{self.prefix}/{hint}_{next(self._names)}"

    def const(self, value, dtype=np.float64) -> str:
        array = np.asarray(value, dtype=object if dtype is str else dtype)
        name = self.name("c")
        if dtype is str:
            tensor = helper.make_tensor(name, TensorProto.STRING, array.shape, [str(v).encode() for v in array.ravel()])
        else:
            tensor = numpy_helper.from_array(array, name)
        self.initializers.append(tensor)
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, domain: str = "", **attributes) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], domain=domain, **attributes))
        return output

    # ---- arithmetic with constants ------------------------------------------------------------
    def add(self, x: str, c) -> str:
        return self.op("Add", x, c if isinstance(c, str) else self.const(c))

    def mul(self, x: str, c) -> str:
        return self.op("Mul", x, c if isinstance(c, str) else self.const(c))

    def polynomial(self, x: str, coefficients: list[float]) -> str:
        """c0 + c1 x + ... + cn x^n by Horner's rule."""
        result = self.const(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            result = self.add(self.op("Mul", result, x), c)
        return result

    # ---- the functions scaling.py takes from numpy and scipy ----------------------------------------
    def interp(self, x: str, xp: list[float], fp: list[float], ties_to_middle: bool = False) -> str:
        """np.interp(x, xp, fp) for x of any shape (xp non-decreasing), clamped at both ends as np.interp is.

        Written as fp[0] + sum over segments of slope * (clip(x, start, end) - start); a segment of zero width is a
        step. With `ties_to_middle` a value exactly on a step takes its middle, as apply_scaler averages the forward
        and backward np.interp (a discrete column's ties)."""
        xp_, fp_ = np.asarray(xp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
        start, end, rise = xp_[:-1], xp_[1:], np.diff(fp_)
        width = end - start
        flat = width > 0
        slope = np.where(flat, rise / np.where(flat, width, 1.0), 0.0)
        column = self.op("Unsqueeze", x, self.const([-1], np.int64))  # (..., 1) against (n_segments,)
        clipped = self.op("Max", self.op("Min", column, self.const(end)), self.const(start))
        ramps = self.op("Mul", self.op("Sub", clipped, self.const(start)), self.const(slope))
        total = self.op("ReduceSum", ramps, self.const([-1], np.int64), keepdims=0)
        if (~flat).any():
            steps = self.const(np.where(flat, 0.0, rise))
            at_or_past = self.op("Cast", self.op("GreaterOrEqual", column, self.const(start)), to=TensorProto.DOUBLE)
            if ties_to_middle:
                past = self.op("Cast", self.op("Greater", column, self.const(start)), to=TensorProto.DOUBLE)
                at_or_past = self.mul(self.op("Add", at_or_past, past), 0.5)
            total = self.op("Add", total, self.op("ReduceSum", self.op("Mul", at_or_past, steps),
                                                  self.const([-1], np.int64), keepdims=0))
        return self.add(total, float(fp_[0]))

    def normal_ppf(self, p: str) -> str:
        """scipy.special.ndtri for p in [_TAIL_FLOOR, 1 - _TAIL_FLOOR] (AS241; both branches computed, one kept)."""
        q = self.add(p, -0.5)
        r_central = self.add(self.mul(self.op("Mul", q, q), -1.0), 0.180625)
        central = self.op("Div", self.op("Mul", q, self.polynomial(r_central, _AS241_CENTRAL[0])),
                          self.polynomial(r_central, _AS241_CENTRAL[1]))
        # the tail: r = sqrt(-log(min(p, 1 - p))) - 1.6, the sign of q
        smaller = self.op("Min", p, self.add(self.mul(p, -1.0), 1.0))
        smaller = self.op("Max", smaller, self.const(_TAIL_FLOOR))
        r_tail = self.add(self.op("Sqrt", self.mul(self.op("Log", smaller), -1.0)), -1.6)
        tail = self.op("Div", self.polynomial(r_tail, _AS241_TAIL[0]), self.polynomial(r_tail, _AS241_TAIL[1]))
        signed_tail = self.op("Where", self.op("Less", q, self.const(0.0)), self.mul(tail, -1.0), tail)
        is_central = self.op("LessOrEqual", self.op("Abs", q), self.const(0.425))
        return self.op("Where", is_central, central, signed_tail)

    def normal_cdf(self, v: str) -> str:
        """scipy.special.ndtr in double: float Erf gives a start, Newton steps on normal_ppf(u) = v refine it.
        Computed on the lower tail (-|v|, where the probability is small and keeps its digits), mirrored for v > 0."""
        low = self.mul(self.op("Abs", v), -1.0)
        erf = self.op("Erf", self.op("Cast", self.mul(low, 1.0 / np.sqrt(2.0)), to=TensorProto.FLOAT))
        u = self.mul(self.add(self.op("Cast", erf, to=TensorProto.DOUBLE), 1.0), 0.5)
        # below -3 float Erf has few digits left: start from the tail series phi(v) / |v| * (1 - 1/v^2 + 3/v^4) instead
        inverse_square = self.op("Reciprocal", self.op("Mul", low, low))
        series = self.add(self.op("Mul", inverse_square, self.add(self.mul(inverse_square, 3.0), -1.0)), 1.0)
        tail = self.op("Div", self.op("Mul", self._density(low), series), self.op("Abs", low))
        u = self.op("Where", self.op("Less", low, self.const(-3.0)), tail, u)
        floor, half = self.const(_TAIL_FLOOR), self.const(0.5)
        for _ in range(_NEWTON_STEPS):
            u = self.op("Min", self.op("Max", u, floor), half)
            z = self.normal_ppf(u)
            u = self.op("Sub", u, self.op("Mul", self.op("Sub", z, low), self._density(z)))
        u = self.op("Min", self.op("Max", u, self.const(0.0)), half)
        return self.op("Where", self.op("Greater", v, self.const(0.0)), self.add(self.mul(u, -1.0), 1.0), u)

    def _density(self, z: str) -> str:
        """The standard normal density."""
        return self.mul(self.op("Exp", self.mul(self.op("Mul", z, z), -0.5)), 1.0 / np.sqrt(2.0 * np.pi))
