"""The command layer's shared parts: what the console shows, and library
errors told in the command's flags."""

import argparse
import logging

import pytest

from keras_bam.commands import common


def test_console_shows_what_the_command_chooses(capsys):
    run = logging.getLogger("keras_bam.training.run")
    ablation = logging.getLogger("keras_bam.training.ablation")
    with common.console(show=("keras_bam.training.ablation",)):
        ablation.info("--- bam: the paper's BAM")
        run.info("epoch 1/2: loss 2.3")
        run.warning("TensorBoard logs off")
    assert capsys.readouterr().out.splitlines() == [
        "--- bam: the paper's BAM", "TensorBoard logs off"]
    with common.console(show=("keras_bam.training.ablation",), verbose=True):
        run.info("epoch 1/2: loss 2.3")
    assert capsys.readouterr().out.splitlines() == ["epoch 1/2: loss 2.3"]
    with common.console():  # the default: every keras_bam logger from INFO
        logging.getLogger("keras_bam.data.reader").info("preparing")
        logging.getLogger("other_library").info("not ours")
    assert capsys.readouterr().out.splitlines() == ["preparing"]
    run.info("after the command")  # the handler went with the block
    assert capsys.readouterr().out == ""
    assert logging.getLogger("keras_bam").handlers == []


def test_console_hides_native_and_library_chatter_unless_verbose(capfd):
    """What TensorFlow's C++ and the converter write to file descriptor 2,
    absl's Python warnings and other libraries' warnings stay off the
    console; the command's own stderr lines and --verbose bring output."""
    import os
    import sys
    import warnings

    absl = logging.getLogger("absl")  # the converter's Python warnings

    def chatter():
        os.write(2, b"E0000 00:00:1 cuda_platform.cc:52] failed call to cuInit\n")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)

    with common.console():
        chatter()
        assert not absl.isEnabledFor(logging.WARNING)
        print("error: the command's own line", file=sys.stderr)
    out, err = capfd.readouterr()
    assert out == "" and err == "error: the command's own line\n"
    assert absl.isEnabledFor(logging.WARNING)  # restored after the block
    with pytest.warns(UserWarning), common.console(verbose=True):
        chatter()
        assert absl.isEnabledFor(logging.WARNING)
    out, err = capfd.readouterr()
    assert "failed call to cuInit" in err


def test_library_arguments_become_flags(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-calibration-samples", type=int)
    parser.add_argument("--output")
    parser.add_argument("--no-bam", dest="bam", action="store_false")
    flags = common.flag_names(parser)
    assert flags == {"num_calibration_samples": "--num-calibration-samples",
                     "output": "--output", "bam": "--no-bam", "no_bam": "--no-bam",
                     "help": "--help"}
    message = ("`output` x is a folder; calibrate on more images "
               "(`num_calibration_samples`); `min_hidden_channels` stays.")
    assert common.in_flags(message, flags) == (
        "--output x is a folder; calibrate on more images "
        "(--num-calibration-samples); `min_hidden_channels` stays.")
    assert common.bad_input(ValueError("`output`\n  is   wrong"), flags) == 2
    assert capsys.readouterr().err == "error: --output is wrong\n"


@pytest.mark.parametrize("module", ["export", "train", "ablation", "attention",
                                    "plot_training"])
def test_every_command_explains_itself(module, capsys):
    import importlib

    command = importlib.import_module(f"keras_bam.commands.{module}")
    with pytest.raises(SystemExit) as exit_info:
        command.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {command.build_parser().prog}")
