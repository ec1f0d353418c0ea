"""The weights stage on a real local Ray cluster: three local revisions, two of them the same weights saved
twice; the ``checkpoints`` view flags exactly the duplicate, the stage and the report say so, the digests
stamp the files of their checkpoints, and a rerun hashes nothing."""

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from transformers import BloomForCausalLM

from analysis.database import create_database
from analysis.provenance import CHECKPOINT_KEY, PROVENANCE_KEY
from analysis.store import Store
from probing.weights_digest import weights_digest
from ray_jobs import report, weights
from ray_jobs.config import load_config
from ray_jobs.context import StudyContext

pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path: Path, ud_dir: Path, tiny_bloom_dir: Path):
    """A study of a local model whose revision step-c is step-a's model loaded and saved again."""
    model = shutil.copytree(tiny_bloom_dir, tmp_path / "model")
    BloomForCausalLM.from_pretrained(model / "step-a").save_pretrained(model / "step-c")
    for file in (model / "step-a").iterdir():  # its tokenizer
        if not (model / "step-c" / file.name).exists():
            shutil.copy(file, model / "step-c" / file.name)
    path = tmp_path / "study.yaml"
    study = {"name": "weights-test", "ud_dir": str(ud_dir), "output_root": str(tmp_path / "study")}
    study |= {"languages": ["en"], "attributes": ["POS"], "layers": [1], "probing": {"k": 4}}
    study["models"] = [{"name": "tiny", "id": str(model), "revisions": ["step-a", "step-b", "step-c"]}]
    path.write_text(yaml.safe_dump(study))
    return load_config(path)


def test_the_revision_with_another_ones_weights_is_flagged_everywhere(ray_cluster, config, tmp_path, capsys):
    context = StudyContext.open(config)
    result = weights.run(context)
    assert (result.run, result.reused) == (3, 0) and not context.failure_rows()
    assert "[weights] WARNING: 1 checkpoint(s)" in capsys.readouterr().out
    model = Path(config.models[0].id)

    store = Store(config.output_root)
    with duckdb.connect(str(create_database(store)), read_only=True) as con:
        flagged = con.execute("SELECT model, checkpoint, duplicate_of FROM checkpoints WHERE duplicate_of IS NOT NULL")
        assert flagged.fetchall() == [("tiny", "step-c", "tiny@step-a")]
        digests = dict(con.execute("SELECT checkpoint, weights_sha256 FROM checkpoints").fetchall())
    for revision, digest in digests.items():
        assert digest == weights_digest(model / revision, tmp_path / "fresh-cache").sha256
    assert digests["step-a"] == digests["step-c"] != digests["step-b"]

    # each checkpoint's own file carries its digest and the run's provenance
    for revision, digest in digests.items():
        metadata = pq.read_metadata(store.path("checkpoint_weights", model="tiny", checkpoint=revision)).metadata
        assert metadata[CHECKPOINT_KEY].decode() == digest
        assert json.loads(metadata[PROVENANCE_KEY])["config_hash"] == context.store.provenance.run["config_hash"]

    html = Path(report.write_report(config, context.store, [])).read_text()
    assert "<h2 id='checkpoints'>Checkpoints</h2>" in html and "DUPLICATE of tiny@step-a" in html
    assert html.count("DUPLICATE of") == 1 and "WARNING: 1 checkpoint(s)" in html
    assert "<footer>" in html and "Produced by xling-neurons" in html

    again = StudyContext.open(config)
    assert again.store.provenance.checkpoints == {("tiny", revision): d for revision, d in digests.items()}
    result = weights.run(again)
    assert (result.run, result.reused) == (0, 3)
