"""Hooks for the schemathesis run of tests/test_api_live.py (SCHEMATHESIS_HOOKS).

Schemathesis only ever sends valid JSON, so it never tries the numbers clients send anyway and
Python's json module reads: NaN, Infinity, -Infinity, and 1e400 (read as infinity). These hooks
put them in request bodies, in place of the params, a param or the operation's name, and send
the body as raw text. NUL bytes are in schemathesis' own strategies (--generation-allow-x00),
but seldom reach a query string in a short run: a hook puts one in a query parameter too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

_MARKER = "__raw_number__:"
_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


def _with_number(body: dict[str, Any], where: str, number: str) -> dict[str, Any]:
    raw = f"{_MARKER}{number}"
    params = body.get("params")
    if where == "param" and isinstance(params, dict) and params:
        return {**body, "params": {**params, next(iter(params)): raw}}
    if where == "params":
        return {**body, "params": raw}
    return {**body, "operation": raw}


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return st.just(body)
    changed = st.builds(
        _with_number, st.just(body), st.sampled_from(["param", "params", "operation"]), st.sampled_from(_NON_FINITE)
    )
    return st.one_of(st.just(body), changed)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not isinstance(case.body, dict):
        return
    text = json.dumps(case.body)
    if _MARKER in text:
        kwargs["data"] = re.sub(rf'"{_MARKER}([^"]+)"', r"\1", text).encode()


def _with_nul(query: dict[str, Any], name: str) -> dict[str, Any]:
    return {**query, name: f"{query[name]}\x00"}


@schemathesis.hook
def flatmap_query(context: Any, query: Any) -> Any:
    if not isinstance(query, dict) or not query:
        return st.just(query)
    return st.one_of(st.just(query), st.builds(_with_nul, st.just(query), st.sampled_from(sorted(query))))
