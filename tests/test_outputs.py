"""Named outputs: views line up with components by field name, in field order."""
from dataclasses import dataclass

import gradio as gr
import pytest

from demo.ui.outputs import outputs_of, returning, unchanged, values


@dataclass
class Pair:
    summary: str
    count: int


@dataclass
class Lone:
    summary: str


def test_outputs_follow_field_order_not_mapping_order():
    ui = {"count": "count-box", "summary": "summary-box", "other": "x"}
    assert outputs_of(Pair, ui) == ["summary-box", "count-box"]


def test_outputs_read_attributes_too():
    class Tab:
        summary, count = "s", "c"
    assert outputs_of(Pair, Tab()) == ["s", "c"]


def test_returning_turns_the_view_into_values_and_checks_its_type():
    assert returning(Pair, lambda n: Pair(f"{n} faces", n))(2) == ("2 faces", 2)
    assert returning(Lone, lambda: Lone("only"))() == "only"
    with pytest.raises(TypeError, match="returned tuple, not Pair"):
        returning(Pair, lambda: ("a", 1))()


def test_unchanged_keeps_every_component():
    assert values(unchanged(Pair)) == (gr.update(), gr.update())
