"""The CPU-checkable parts of scripts/verl_gpu_smoke.py: the offline tiny model, the data,
the configuration it composes (the recipe's dry run passes), and the log check.
The GPU run itself was not run here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "verl_gpu_smoke", ROOT / "scripts" / "verl_gpu_smoke.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_smoke_inputs_are_built_offline_and_the_dry_run_passes(tmp_path: Path) -> None:
    from transformers import AutoConfig

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "verl_gpu_smoke.py"),
            "--workdir",
            str(tmp_path),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pkg://icdreward_verl.sampler" in done.stdout
    assert "trainer.total_training_steps=2" in done.stdout
    config = AutoConfig.from_pretrained(str(tmp_path / "tiny-qwen2"))
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("qwen2", 2, 64)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "train.parquet").metadata.num_rows == 16


def test_the_log_check_reads_verls_console_lines() -> None:
    smoke = _smoke()
    log = "step:1 - icdreward/score:1.0 - icdreward/group/all_equal:0.5 - actor/lr:1e-6\nother\n"
    assert smoke.metrics_in(log) == [{"icdreward/score", "icdreward/group/all_equal"}]
