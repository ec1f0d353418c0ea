"""The study report states how layers are numbered, so that its layer numbers can be read against the papers'."""

import duckdb

from analysis.study_report import build_report
from probing.models import LAYER_CONVENTION


def test_report_states_the_layer_convention_near_the_top(tmp_path):
    study = {"name": "s", "checkpoints": {"m": ["step-0"]}, "languages": ["en"], "attributes": ["Number"]}
    study |= {"layers": [12, 16], "methods": ["random"], "k": 5}
    html = build_report(duckdb.connect(), tmp_path, study).read_text(encoding="utf-8")
    sentence = "layer 0 = embedding output, layer L = output of block L; paper 002's layer L is our L−1"
    assert sentence == LAYER_CONVENTION
    assert sentence in html.replace("&#x27;", "'").replace("&#39;", "'")
    assert html.index("output of block L") < html.index("Query the results")  # in the overview, before the rest
