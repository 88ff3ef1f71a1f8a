"""Request bodies are JSON as RFC 8259 defines it: Python's json module also reads NaN, Infinity
and -Infinity, and turns 1e400 into infinity; none of them is a number any field can take."""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        return json.loads(request.body, parse_constant=_refuse_constant, parse_float=_finite_float)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; numbers must be finite.")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text} is out of range; numbers must be finite.")
    return number
