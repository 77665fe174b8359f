"""Policy schema, loading errors and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardray.config.base import ConfigError
from guardray.policies import format_gip_input, load_policies, load_policy, render_policy

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "configs" / "policies"

GOOD = """\
id: demo
name: Demo Policy
description: A  demo
  policy.
allowed: [ask things]
disallowed: [do bad things, do worse things]
examples: {safe: [hi], unsafe: [do bad things now]}
"""


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_policies_are_the_benchmark_four():
    policies = load_policies([POLICY_DIR])
    assert [p.id for p in policies] == ["finance", "injection", "safety", "tax"]
    for p in policies:
        assert len(p.disallowed) >= 5 and len(p.allowed) >= 5
        assert p.examples.safe and p.examples.unsafe


def test_safety_policy_matches_appendix_a3():
    safety = load_policy(POLICY_DIR / "safety.yaml")
    assert safety.disallowed[0] == "Violent or hurtful topics"
    assert safety.disallowed[-1] == "Vulgar or offensive language"
    assert len(safety.disallowed) == 16 and len(safety.allowed) == 10
    assert safety.allowed[-1] == "Explain ethical and responsible behavior"


def test_good_policy_normalises_whitespace(tmp_path):
    p = load_policy(write(tmp_path, GOOD))
    assert p.description == "A demo policy."
    assert p.instructions == []


@pytest.mark.parametrize(
    "edit, field, problem",
    [
        (("id: demo", "id: Demo Policy"), "id", "is not a valid id"),
        (("allowed: [ask things]", "allowed: []"), "allowed", "at least 1 item"),
        (("disallowed: [do bad things, do worse things]", "disallowed: [a, A]"), "disallowed", "duplicate entry"),
        (("name: Demo Policy", "name: '   '"), "name", "must not be blank"),
        (("examples: {safe: [hi], unsafe: [do bad things now]}", "examples: {safe: ['']}"), "examples.safe", "is empty"),
        (("examples: {safe: [hi], unsafe: [do bad things now]}", "examples: {good: [x]}"), "examples.good", "unknown key"),
        (("allowed: [ask things]\n", ""), "allowed", "Field required"),
    ],
)
def test_bad_policy_names_file_field_and_problem(tmp_path, edit, field, problem):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    line = next(l for l in str(info.value).splitlines() if f": {field}: " in l)
    assert line.startswith(f"{path}: {field}: ") and problem in line


def test_duplicate_ids_across_files(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError, match=r"b\.yaml: id: 'demo' is already used by .*a\.yaml"):
        load_policies([tmp_path])


def test_all_bad_files_reported_together(tmp_path):
    write(tmp_path, "id: x\n", "a.yaml")
    write(tmp_path, "id: [\n", "b.yaml")
    with pytest.raises(ConfigError) as info:
        load_policies([tmp_path])
    assert "a.yaml" in str(info.value) and "b.yaml" in str(info.value)


def test_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="holds no policy files"):
        load_policies([tmp_path])


def test_render_policy_lists_should_not_then_can():
    tax = load_policy(POLICY_DIR / "tax.yaml")
    text = render_policy(tax)
    lines = text.splitlines()
    assert lines[0] == "Avoid Tax Advice"
    assert lines.index("Should not") < lines.index("Can")
    assert f"  - {tax.disallowed[0]}" in lines and f"  - {tax.allowed[-1]}" in lines
    assert "Examples of" not in text
    assert f"  - {tax.examples.unsafe[0]}" in render_policy(tax, with_examples=True).splitlines()


def test_gip_input_format_paper_3_3():
    assert format_gip_input("No tax advice.", "How do I file?", "asks for filing advice", "</s>") == (
        "No tax advice.\nQuery: How do I file? </s> asks for filing advice"
    )
    # no rationale at inference: the separator and rationale are left out
    assert format_gip_input("No tax advice.", "How do I file?") == "No tax advice.\nQuery: How do I file?"
    assert format_gip_input("D", "x", "") == "D\nQuery: x"


# --------------------------------------------------------------------------- issue 15, item 6


@pytest.mark.parametrize("name", ["\u200b\u200b", "\u202e\u202d\u2066", "\ufeff \u2060",
                                  "\u200e\u200f\u061c", "\u3164", "\u0301\u0301"])
def test_names_made_only_of_invisible_or_bidi_characters_are_blank(tmp_path, name):
    """A name of zero-width / bidi control characters passed the blank check."""
    path = write(tmp_path, GOOD.replace("name: Demo Policy", f'name: "{name}"'))
    with pytest.raises(ConfigError, match=r"p\.yaml: name: must not be blank \(it has no "
                                          r"visible character\)"):
        load_policy(path)


def test_invisible_list_items_and_control_characters_are_refused(tmp_path):
    path = write(tmp_path, GOOD.replace("allowed: [ask things]", 'allowed: ["\\u200b"]'))
    with pytest.raises(ConfigError, match=r"allowed: item 0 of allowed is empty"):
        load_policy(path)
    path = write(tmp_path, GOOD.replace("name: Demo Policy", 'name: "Demo \\e[2J"'))
    with pytest.raises(ConfigError, match=r"name: holds control character\(s\) U\+001B"):
        load_policy(path)
    rtl = load_policy(write(tmp_path, GOOD.replace("name: Demo Policy", "name: سياسة الضرائب")))
    assert rtl.name == "سياسة الضرائب"  # right-to-left text itself is fine


def test_description_and_items_have_size_limits(tmp_path):
    """A 5 MB description was accepted (and `policies show` printed all of it)."""
    from guardray.policies.loader import MAX_FILE_BYTES
    from guardray.policies.schema import MAX_DESCRIPTION, MAX_ITEM, MAX_ITEMS

    long = "x" * (MAX_DESCRIPTION + 1)
    with pytest.raises(ConfigError, match=rf"description: is {MAX_DESCRIPTION + 1} characters "
                                          rf"long; at most {MAX_DESCRIPTION} are allowed"):
        load_policy(write(tmp_path, GOOD.replace("description: A  demo\n  policy.",
                                                 f"description: {long}")))
    items = ", ".join(f"b{i}" for i in range(MAX_ITEMS + 1))
    with pytest.raises(ConfigError, match=rf"allowed: allowed has {MAX_ITEMS + 1} items"):
        load_policy(write(tmp_path, GOOD.replace("[ask things]", f"[{items}]")))
    with pytest.raises(ConfigError, match=rf"allowed: item 0 of allowed is {MAX_ITEM + 1} char"):
        load_policy(write(tmp_path, GOOD.replace("[ask things]", f"[{'y' * (MAX_ITEM + 1)}]")))
    huge = write(tmp_path, GOOD.replace("description: A  demo\n  policy.",
                                        "description: " + "z" * 5_000_000), "huge.yaml")
    with pytest.raises(ConfigError, match=rf"huge\.yaml: 5000\d+ bytes; a policy file may hold "
                                          rf"at most {MAX_FILE_BYTES}"):
        load_policy(huge)


def test_policies_show_cuts_long_lines_unless_full(tmp_path):
    import subprocess
    import sys

    from guardray.cli.policies_cmd import SHOW_WIDTH

    desc = "w" * 1500
    path = write(tmp_path, GOOD.replace("description: A  demo\n  policy.", f"description: {desc}"))

    def show(*extra):
        return subprocess.run([sys.executable, "-m", "guardray", "policies", "show", str(path),
                               *extra], capture_output=True, text=True, cwd=REPO, timeout=60)

    cut = show()
    assert cut.returncode == 0, cut.stderr
    line = cut.stdout.splitlines()[1]
    assert line == "w" * SHOW_WIDTH + f"... [{1500 - SHOW_WIDTH} more characters; --full " \
                                      "prints all]"
    assert show("--full").stdout.splitlines()[1] == desc
    bad = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\xff".decode("latin-1"), "logo.yaml")
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    r = subprocess.run([sys.executable, "-m", "guardray", "policies", "validate", str(bad)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{bad}: not UTF-8 text (byte 0x89 at offset 0)" in r.stderr
