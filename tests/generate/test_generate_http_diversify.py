"""The generate job on the openai_http backend (a real server on 127.0.0.1 serving SmolLM2),
with policy diversification (GuardFormer 3.3) switched on. Slow: ~150 generated tokens per
synthetic policy on CPU."""  # noqa: D400

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardray import schema as S
from guardray.config import load_config
from guardray.generate import rejects as R
from guardray.generate.config import GenerateConfig
from guardray.generate.stage import PlanMismatchError, run_generate
from guardray.io import read_manifest, read_shards
from guardray.llm.hf import HFChatGenerator
from guardray.llm.openai_server import OpenAICompatServer
from guardray.policies import Policy

REPO = Path(__file__).resolve().parents[2]
MODEL = "embedded:smollm2-135m-instruct"


@pytest.mark.slow
def test_http_backend_job_with_diversification(ray_session, tmp_path):
    smol = HFChatGenerator(MODEL, num_threads=1)
    with OpenAICompatServer(smol, MODEL, max_batch_size=4) as server:
        cfg = load_config(GenerateConfig, REPO / "configs/debug/generate.yaml", [
            f"output_dir={tmp_path}", f"policies=[{REPO}/configs/policies/tax.yaml]",
            "llm.backend=openai_http", f"llm.http.url={server.chat_url}", "llm.batch_size=2",
            "diversify.enabled=true", "diversify.num_policies=2", "diversify.max_tokens=160",
            "diversify.examples_per_request=3", "diversify.unsafe_per_policy=1",
            "diversify.safe_per_policy=1",
        ])
        manifest = run_generate(cfg)
        div = manifest["extra"]["stages"]["diversify"]
        state = json.loads((tmp_path / "_state" / "diverse_policies.json").read_text())
        made = [Policy.model_validate(p) for p in state["policies"]]
        assert div["requested"] == 2 and div["policies"] == [p.id for p in made]
        policy_rejects = R.read_rejects(str(tmp_path / "rejects"))
        kinds = policy_rejects.column(R.KIND).to_pylist()
        assert kinds.count("policy") == 2 - len(made) == sum(div["rejected"].values())
        assert manifest["extra"]["stages"]["expand"]["requests"]["diverse"] == 2 * len(made)
        # SmolLM2-135M rarely writes a complete policy in 160 tokens; whatever it made is
        # valid and has its samples (test_generate_job covers diverse samples for certain).
        rows = read_shards(tmp_path).to_pylist()
        diverse = [r for r in rows if r[S.SOURCE] == "diverse"]
        assert {r[S.POLICY_ID] for r in diverse} <= {p.id for p in made}
        assert all(r[S.POLICY_ID] == "tax" for r in rows if r[S.SOURCE] == "seed")
        assert manifest["extra"]["backend"] == "openai_http"
        assert manifest["extra"]["stages"]["generate"]["backend_errors"] == 0

        with pytest.raises(PlanMismatchError, match=r"other diversify settings \(changed: topics\)"):
            run_generate(cfg.model_copy(update={"diversify": cfg.diversify.model_copy(
                update={"topics": ["chess"]})}))
        again = run_generate(cfg)  # resumes: policies reused, no task rerun
        assert again["extra"]["stages"]["write"]["tasks_run_now"] == 0
        assert again["extra"]["stages"]["diversify"]["policies"] == div["policies"]
        assert read_manifest(tmp_path)["counts"] == manifest["counts"]
