"""The JSON nesting check agrees with a real parser's idea of depth (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from imagegate.api.json_depth import nesting_exceeds

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab'), children, max_size=3)
    ),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(JSON, st.integers(min_value=1, max_value=8))
def test_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    assert nesting_exceeds(body, limit) == (depth(value) > limit)


def test_alternating_brackets_count_one_level_each() -> None:
    body = b"[{" * 20 + b"}]" * 20  # 40 levels
    assert nesting_exceeds(body, 39)
    assert not nesting_exceeds(body, 40)


def test_unbalanced_input_is_left_to_the_parser() -> None:
    assert not nesting_exceeds(b"[" * 100, 10)
