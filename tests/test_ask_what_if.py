"""What if in the Ask tab: the answer continued after another word at one position (``ask_tab.ask_what_if``,
the same section as the Caption tab's). The model's own first k tokens give back its own answer, and a
forced alternative's reported probabilities are those of one teacher-forced pass computed here."""

from __future__ import annotations

import gradio as gr
import pytest
import torch
from conftest import decoding_values, random_image

from blip.engine import Engine
from blip.explain import render
from blip.generation.tasks import question_ids
from blip.loading.tokenizer import DEC_ID, ENC_ID, SEP_ID
from blip.loading.uploads import open_upload
from ui import ask_tab, what_if
from ui.decoding import GREEDY
from ui.errors import friendly
from ui.services import Services

pytestmark = pytest.mark.unit
QUESTIONS = ["what is it?", "how many dogs are there?"]
SHAPES = sorted(
    (__import__("pathlib").Path(__file__).resolve().parents[1] / "assets/examples/shapes").glob("*.png")
)


def _greedy(**changes) -> list:
    return decoding_values(GREEDY, **({"min_new_tokens": 1, "max_new_tokens": 10} | changes))


@pytest.fixture(scope="module")
def tiny(checkpoints, tmp_path_factory):
    """Services over an oracle-built VQA checkpoint, and three pictures saved as files."""
    engine = Engine(device="cpu", demo="never", local_models={"vqa-tiny": checkpoints.decoding("vqa", 0)})
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i in range(3):
        paths.append(str(folder / f"{i}.png"))
        random_image(500 + i).save(paths[-1])
    services = Services(engine=engine, open_image=open_upload, overlay=render.overlay, models={})
    return services, paths


def test_the_models_own_first_tokens_give_back_its_answer(tiny):
    services, paths = tiny
    checked = 0
    for options in (_greedy(), _greedy(repetition_penalty=1.3, no_repeat_ngram_size=2)):
        for path in paths:
            for question in QUESTIONS:
                image = open_upload(path)
                original = services.engine.answer(
                    image, question, "vqa-tiny", ask_tab.decoding_options(*options)
                )
                best = original.answers[0]
                for k, token in enumerate(best.tokens, start=1):  # the word at k is the model's own
                    rows, _, token_rows, summary, _ = ask_tab.ask_what_if(
                        services, path, "vqa-tiny", question, "[ENC]", options, k, token.token
                    )
                    (_, before, before_score), (_, after, after_score) = rows
                    assert before == after == best.text, (path, question, k)
                    assert after_score == pytest.approx(before_score, abs=1e-4)
                    assert [r[2] for r in token_rows] == [round(t.probability, 4) for t in best.tokens]
                    assert f"first {k} token(s)" in summary
                    checked += 1
    assert checked >= 12


@torch.no_grad()
def test_a_forced_alternative_reports_teacher_forced_probabilities(tiny):
    services, paths = tiny
    engine = services.engine
    loaded = engine.model("vqa-tiny")
    changed = 0
    for path in paths:
        image = open_upload(path)
        for question in QUESTIONS:
            options = ask_tab.decoding_options(*_greedy())
            best = engine.answer(image, question, "vqa-tiny", options).answers[0]
            step = min(1, len(best.tokens) - 1)
            other = next(
                i for i in best.tokens[step].alternative_ids if i not in (best.tokens[step].token_id, SEP_ID)
            )
            forced = [t.token_id for t in best.tokens[:step]] + [other]
            new = engine.answer(image, question, "vqa-tiny", options, forced=forced).answers[0]
            ids = [t.token_id for t in new.tokens]
            assert ids[: len(forced)] == forced and new.forced == len(forced)
            changed += ids != [t.token_id for t in best.tokens]
            # Independently: encode the image and the question afresh, then one teacher-forced pass.
            embeds = loaded.model.encode_image(loaded.pixels(image))
            states = loaded.model.encode_question(
                embeds, question_ids(loaded.tokenizer, question, ENC_ID)
            ).hidden_states
            full = torch.tensor([[DEC_ID, *ids]])
            logits, _ = loaded.model.answer_logits(states, full)
            expected = logits[0, :-1].log_softmax(-1).gather(-1, full[0, 1:, None]).squeeze(-1)
            assert torch.allclose(torch.tensor(new.logprobs), expected, atol=1e-5), (path, question)
            assert new.score == pytest.approx(float(expected.sum()), abs=1e-4)
            # The Ask tab's what-if shows the same numbers for that word.
            name = loaded.tokenizer.convert_ids_to_tokens([other])[0]
            _, _, token_rows, _, _ = ask_tab.ask_what_if(
                services, path, "vqa-tiny", question, "[ENC]", _greedy(), step + 1, name
            )
            assert [r[1] for r in token_rows] == loaded.tokenizer.convert_ids_to_tokens(ids)
            assert [r[2] for r in token_rows] == [round(p, 4) for p in expected.exp().tolist()]
    assert changed >= 1


@pytest.fixture(scope="module")
def demo() -> Services:
    models = {"caption": ["caption-base"], "vqa": ["vqa-base"], "retrieval": ["itm-base-coco"]}
    engine = Engine(device="cpu", demo="always")
    return Services(engine=engine, open_image=open_upload, overlay=render.overlay, models=models)


def test_ask_what_if_on_the_demo_model_answers_the_new_colour_with_its_heatmaps(demo):
    red_circle = str(SHAPES[0])
    rows, tokens, token_rows, summary, state = ask_tab.ask_what_if(
        demo, red_circle, "vqa-base", "what colour is the circle?", "[ENC]", _greedy(), 1, "blue", True
    )
    (_, original, _), (what, new, _) = rows
    assert original == "red" and new.startswith("blue") and what == "what if token 1 were 'blue'"
    assert tokens[0][0] == "blue" and token_rows[0][1] == "blue" and "Offline demo model" in summary
    assert [text for text, _ in state["texts"]] == [f"what if: {new}", "question: what colour is the circle?"]
    handler = friendly(ask_tab.ask_what_if)
    for position, word, message in [(0, "blue", "Position must be between 1 and"), (1, " ", "Type a word")]:
        with pytest.raises(gr.Error, match=message):
            handler(
                demo, red_circle, "vqa-base", "what colour is the circle?", "[ENC]", _greedy(), position, word
            )


def test_the_ask_token_table_comes_from_the_raw_result(demo):
    *_, raw = ask_tab.ask(
        demo, str(SHAPES[0]), "vqa-base", "what colour is the circle?", ask_tab.GENERATE, "", "[ENC]", _greedy(),
        heatmaps=False,
    )  # fmt: skip
    rows = what_if.token_rows_of(raw, "answers")
    assert [r[1] for r in rows] == [t["token"] for t in raw["answers"][0]["tokens"]] and rows[0][1] == "red"
    assert rows[0][3] and "red" not in rows[0][3].split(" ")[0]  # the alternatives, the chosen word left out
    assert what_if.token_rows_of({"answers": [], "ranked": [{"answer": "red"}]}, "answers") == []
