"""Folders that look like models but are not ones guardray may load (issue 15, items 2-3).

Built from a real model folder ``good`` (config, safetensors, tokenizer), each with one
defect. ``remote`` carries a module that would write ``PWNED`` next to it if it ever ran.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# folder name -> a phrase of the one-line error that names its defect
BAD_MODELS = {
    "missing": "no such folder",
    "empty": "is not a Hugging Face model folder (no config.json)",
    "no_weights": "has no weights (*.safetensors)",
    "pickle_only": "holds only pickle weights (pytorch_model.bin)",
    "remote_code": "needs its own model code (config.json auto_map -> evil.py",
    "no_tokenizer": "has no tokenizer files",
    "bad_config": "config.json is not readable JSON",
    "a_file": "is a file, not a model folder",
}


def make_bad_models(root: Path, good: Path) -> dict[str, Path]:
    """One folder per `BAD_MODELS` entry under ``root`` (``missing`` is not created)."""
    root.mkdir(parents=True, exist_ok=True)
    out = {name: root / name for name in BAD_MODELS}
    out["empty"].mkdir()
    files = [f for f in good.iterdir() if f.is_file()]
    weights = [f for f in files if f.suffix == ".safetensors"]
    tokenizer = [f for f in files if f.name.startswith(("tokenizer", "special_tokens"))]
    for name, skip in (("no_weights", weights), ("pickle_only", weights),
                       ("remote_code", []), ("no_tokenizer", tokenizer), ("bad_config", [])):
        out[name].mkdir()
        for f in files:
            if f not in skip:
                shutil.copy(f, out[name] / f.name)
    (out["pickle_only"] / "pytorch_model.bin").write_bytes(b"\x80\x04never unpickled")
    config = json.loads((good / "config.json").read_text())
    config.update(model_type="evilnet", auto_map={
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilForSequenceClassification"})
    (out["remote_code"] / "config.json").write_text(json.dumps(config))
    (out["remote_code"] / "evil.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('PWNED').write_text('ran')\n")
    (out["bad_config"] / "config.json").write_text("{not json")
    out["a_file"].write_text("not a folder\n")
    return out
