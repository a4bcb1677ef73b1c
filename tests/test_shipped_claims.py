"""The shipped teacher and student hold their cards' figures: evaluated here on the test split embedded in the
package (eurosat_mini, 1,000 images), within sampling noise.

The student's card was measured on exactly these images, so its figures must come back to within a few
images (numerics only). The teacher's card was measured on the whole shared test split (5,400 images), of
which these 1,000 are a part: its accuracy here must lie within three binomial standard errors of the card.
"""

import json
import math
import pathlib

import pytest

from funmatch.commands import demo

pytestmark = pytest.mark.slow  # 18 CPU s: the teacher on 1,000 images at 112 px


@pytest.fixture(scope="module")
def embedded_test_split(tmp_path_factory):
    from funmatch.data.prepare import prepare

    out = tmp_path_factory.mktemp("eurosat_mini") / "data"
    prepare(f"folder:{demo.asset('eurosat_mini')}", out, splits=["test"], progress=False, name="eurosat_mini")
    return out


@pytest.fixture(scope="module")
def evaluation(embedded_test_split):
    from funmatch.evaluation import evaluate_models

    return evaluate_models(demo.asset("students", "eurosat_student.keras"), demo.shipped_teacher(),
                           data_dir=embedded_test_split, split="test", latency=False)


def _card(*parts):
    return json.loads(demo.asset(*parts).read_text())


def test_shipped_teacher_matches_its_card_on_the_embedded_test_split(evaluation):
    card = _card("teachers", "eurosat_teacher.json")
    measured, claimed = evaluation["teacher"]["accuracy_top1"], card["test_accuracy"]
    noise = 3 * math.sqrt(claimed * (1 - claimed) / 1000)  # 1.8 points at 96.1 %
    assert abs(measured - claimed) <= noise, (measured, claimed, noise)


def test_shipped_student_matches_its_card_on_the_embedded_test_split(evaluation):
    card = _card("students", "eurosat_student.json")
    assert card["data"]["evaluated_on"] == "the test split of eurosat_mini (1000 images)"
    assert evaluation["student"]["accuracy_top1"] == pytest.approx(card["test_accuracy"], abs=0.0025)
    assert evaluation["fidelity"]["agreement_top1"] == pytest.approx(card["test_agreement"], abs=0.0025)


def test_shipped_cards_name_no_path_of_the_machine_that_made_them():
    """The cards ship inside the package: a data source under the package's assets is named relative to the
    repository (scripts/ship_student.py writes it so), never by the absolute path where it was built."""
    import sys

    card = json.loads(demo.asset("students", "eurosat_student.json").read_text())
    assert card["data"]["source"] == "folder:src/funmatch/assets/eurosat_mini"
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
    import ship_student

    assert ship_student._packaged("folder:/any/checkout/src/funmatch/assets/eurosat_mini") == card["data"]["source"]
    assert ship_student._packaged("folder:/data/flowers") == "folder:/data/flowers"
