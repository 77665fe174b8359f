"""The guard on real Ray Serve over real HTTP: values, errors, health, OpenAPI, batching.

One module-scoped Serve instance with two applications of the same tiny instruction-format
guard (two policies): ``/`` answers at once (small batch wait), ``/batched`` waits up to 30 s
for 8 pairs so concurrent requests are grouped deterministically (a full batch runs at once).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from serve_testlib import POLICIES, PROMPTS, direct_scores, free_port, make_guard

from guardray.client import AsyncGuardClient, GuardClient, GuardHTTPError

# Serve start-up (controller, proxy, two replicas) took 66-101 s on the loaded 2-core machine.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from guardray.serve import config_from_args
    from guardray.serve.run import start_serving

    model = make_guard(tmp_path_factory.mktemp("guard") / "inst", input_format="instruction",
                       threshold=0.5, seed=3)
    port = free_port()
    common = {"model": {"path": str(model), "policies": []},
              "http": {"port": port}, "deployment": {"num_cpus": 0.5},
              "limits": {"max_prompt_chars": 200, "max_prompts": 4}}
    fast = config_from_args({**common, "batching": {"max_batch_size": 8,
                                                    "batch_wait_timeout_s": 0.01}})
    batched = config_from_args({**common, "app_name": "batched", "route_prefix": "/batched",
                                "batching": {"max_batch_size": 8,
                                             "batch_wait_timeout_s": 30.0}})
    url = start_serving(fast)
    url_batched = start_serving(batched)
    yield {"model": model, "url": url, "batched": url_batched}
    serve.shutdown()


def test_classify_round_trip_equals_direct_model_calls(served):
    client = GuardClient(served["url"])
    verdict = client.classify(PROMPTS[:2])
    pids = sorted(POLICIES)
    got = [(r.prompt_index, r.policy_id) for r in verdict.results]
    assert got == [(0, pids[0]), (0, pids[1]), (1, pids[0]), (1, pids[1])]
    texts = [PROMPTS[i] for i, _ in got]
    expected = direct_scores(served["model"], texts, [p for _, p in got], instruction=True)
    np.testing.assert_allclose([r.probability for r in verdict.results], expected, atol=1e-5)
    assert [r.label for r in verdict.results] == [
        "unsafe" if p >= 0.5 else "safe" for p in expected]
    assert verdict.flagged == any(p >= 0.5 for p in expected)
    assert verdict.model["name"] == "tiny-instruction" and len(verdict.model["version"]) == 12
    assert {r.threshold for r in verdict.results} == {0.5}
    one = client.classify(PROMPTS[2], policies=["injection"])
    assert [(r.prompt_index, r.policy_id) for r in one.results] == [(0, "injection")]


@pytest.mark.parametrize("body, status, code", [
    (b'{"prompts": ["a", ', 400, "malformed_json"),
    (b'not json at all', 400, "malformed_json"),
    (b'{"prompts": "not a list"}', 422, "invalid_request"),
    (b'{"prompts": []}', 422, "empty_request"),
    (b'{"prompts": ["a", "b", "c", "d", "e"]}', 413, "too_many_prompts"),
    (b'{"prompt": "' + b"x" * 201 + b'"}', 413, "prompt_too_long"),
    (b'{"prompt": "a", "policies": ["tax"]}', 422, "unknown_policy"),
])
def test_bad_requests_get_4xx_json_errors_and_the_replica_keeps_serving(served, body, status,
                                                                         code):
    client = GuardClient(served["url"])
    with pytest.raises(GuardHTTPError) as info:
        client.request("POST", "/v1/classify", raw=body)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message
    assert client.classify("still alive?").results  # the same replica answers the next one


def test_health_policies_and_openapi(served):
    client = GuardClient(served["url"])
    health = client.health()
    assert health["status"] == "ok" and health["policies"] == sorted(POLICIES)
    info = client.policies()
    assert info["threshold"] == 0.5 and info["threshold_source"] == "checkpoint"
    schema = client.request("GET", "/openapi.json")
    assert "/v1/classify" in schema["paths"] and "/healthz" in schema["paths"]


def test_concurrent_requests_are_grouped_into_one_batch(served):
    """4 requests x 2 policies = 8 pairs = one full batch: each answer reports batch size 8
    (a batch of more than 2 pairs must hold pairs of several requests)."""
    client = GuardClient(served["batched"], timeout=120)
    before = client.stats()["pairs"]
    barrier = threading.Barrier(4)
    answers: list = [None] * 4

    def send(i: int) -> None:
        barrier.wait()
        answers[i] = client.classify(PROMPTS[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sizes = {r.batch_size for a in answers for r in a.results}
    assert sizes == {8}
    stats = client.stats()
    assert stats["pairs"] - before == 8 and stats["batch_size_histogram"].get("8", 0) >= 1
    # values do not depend on the batch they were scored in
    fast = GuardClient(served["url"]).classify(PROMPTS[:4])
    np.testing.assert_allclose([r.probability for a in answers for r in a.results],
                               [r.probability for r in fast.results], atol=1e-5)


def test_async_client(served):
    import asyncio

    async def go():
        client = AsyncGuardClient(served["url"])
        return await asyncio.gather(client.is_unsafe(PROMPTS[0]), client.health())

    unsafe, health = asyncio.run(go())
    assert isinstance(unsafe, bool) and health["status"] == "ok"
