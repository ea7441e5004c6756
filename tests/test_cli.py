import pytest

from fastdp.cli import main


@pytest.mark.parametrize("argv", [["demo", "--rows", "0"], ["demo", "--backend", "gpu"], [],
                                  ["demo", "--ranks", "x"]])
def test_bad_arguments_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
