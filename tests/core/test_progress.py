"""Progress output: a live bar on a terminal, plain lines elsewhere (a file, a CI log), never carriage returns in a
log."""

from __future__ import annotations

import io

from kdscope import zoo
from kdscope.core.progress import progress_bar, progress_line
from kdscope.train import TrainConfig, train


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_training_logged_to_a_file_writes_one_plain_line_per_epoch(tiny_world, capsys):
    model = zoo.build("student", 10, seed=0, width=2)
    train(model, tiny_world[0], TrainConfig(epochs=3, batch_size=32), progress=True, name="kd")
    captured = capsys.readouterr()
    assert "\r" not in captured.err and captured.out == ""
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["kd epoch 1/3", "kd epoch 2/3", "kd epoch 3/3"]
    assert all("train_loss=" in line for line in lines)


def test_a_loop_off_a_terminal_ends_with_its_count_and_rate():
    log = io.StringIO()
    bar = progress_bar(range(5), desc="audit", stream=log)
    for _ in bar:
        bar.set_postfix(stage="cka")
    assert "\r" not in log.getvalue()
    (line,) = log.getvalue().splitlines()
    assert line.startswith("audit: 5 in ") and "/s)" in line and line.endswith("stage=cka")
    progress_line("audit: done", stream=log)
    assert log.getvalue().splitlines()[-1] == "audit: done"


def test_a_vanishing_bar_off_a_terminal_writes_nothing_and_a_terminal_gets_the_live_bar():
    log, terminal = io.StringIO(), _Terminal()
    assert list(progress_bar(range(3), desc="epoch", leave=False, stream=log)) == [0, 1, 2]
    assert log.getvalue() == ""
    assert list(progress_bar(range(3), desc="epoch", stream=terminal)) == [0, 1, 2]
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()
