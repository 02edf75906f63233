"""Named outputs: views line up with components by field name, in field order; handlers get the
store bound in and Gradio sees only the event's inputs."""
import inspect
from dataclasses import dataclass

import gradio as gr
import pytest

from demo.ui.outputs import bound, outputs_of, returning, unchanged, values


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


def test_bound_fills_the_store_and_gradio_sees_only_the_inputs():
    def _switch(new_key: str, request: gr.Request, store: dict, progress=gr.Progress()) -> Lone:
        return Lone(f"{new_key} from {store['name']}")

    store = {"name": "the store"}
    event = returning(Lone, bound(_switch, store=store))
    assert event("raf-db", None) == "raf-db from the store"
    assert event.__name__ == "_switch"  # Gradio names the event after it (tests look events up by name)
    assert list(inspect.signature(event).parameters) == ["new_key", "request", "progress"]
    with pytest.raises(TypeError, match="takes no shop"):
        bound(_switch, shop=store)


def test_gradio_fills_a_progress_after_the_store_by_position():
    def _compare(subject: str, store: dict, progress=gr.Progress()) -> Lone:
        return Lone(f"{subject} with {store['name']} ({type(progress).__name__})")

    event = returning(Lone, bound(_compare, store={"name": "the store"}))
    # Gradio passes the inputs and then the progress tracker positionally, by the signature it sees.
    assert event("face", gr.Progress()) == "face with the store (Progress)"


def test_a_bound_generator_still_streams():
    def _evaluate(archive: str, store: dict):
        yield f"unpacking {archive}"
        yield f"done with {store['name']}"

    event = bound(_evaluate, store={"name": "the store"})
    assert inspect.isgeneratorfunction(event)  # else Gradio would send the generator object as the output
    assert list(event("faces.zip")) == ["unpacking faces.zip", "done with the store"]
