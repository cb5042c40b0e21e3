"""tools/training_curves.py: per-epoch values of recipe runs against training minutes, read back from
the timestamped log.txt SpeechBrain's loggers write (the real line format), table, best mark, plot."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location("training_curves", os.path.join(ROOT, "tools", "training_curves.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder, start_minute, values):
    os.makedirs(folder)
    lines = [f"2026-12-05 15:{start_minute:02d}:00,000 - speechbrain.utils.epoch_loop - INFO - Going into epoch 1"]
    for epoch, value in enumerate(values, 1):
        lines.append(f"2026-12-05 15:{start_minute + 2 * epoch:02d}:30,500 - speechbrain.utils.train_logger - INFO - "
                     f"epoch: {epoch}, phase: gan, lr: 1.98e-04 - train loss: 62.76, train d_loss: 0.00e+00 - "
                     f"valid loss: {1 - value:.3f}, valid stoi: {value:.3e}")
        lines.append("  a tqdm line without a time stamp, ignored")
    with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def test_table_and_plot_of_two_runs(tmp_path, capsys):
    tool = _tool()
    _run(tmp_path / "a", 0, [0.55, 0.61, 0.60])
    _run(tmp_path / "b", 10, [0.50, 0.52])
    png = tmp_path / "new_folder" / "curves.png"  # its folder is made
    tool.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--key", "valid stoi", "--plot", str(png)])
    out = capsys.readouterr().out
    assert "| a | 2 | 4.5 | 0.61 (best) |" in out and "| b | 2 | 4.5 | 0.52 (best) |" in out
    assert "| a | 3 | 6.5 | 0.6 |" in out
    assert png.stat().st_size > 5000
    rows = tool.parse_epochs(str(tmp_path / "a" / "log.txt"))
    assert [row["epoch"] for row in rows] == [1.0, 2.0, 3.0] and rows[0]["phase"] == "gan"
    # A loss: the lowest is the best.
    tool.main([f"a={tmp_path / 'a'}", "--key", "valid loss"])
    assert "| a | 2 | 4.5 | 0.39 (best) |" in capsys.readouterr().out


def test_a_folder_without_a_log_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _tool().main([f"x={tmp_path}"])
    assert f"{tmp_path}: no log.txt" in capsys.readouterr().err
