"""Files and folders written whole or not at all (d2v_hf.atomic_io), with the permissions a plain write gives."""

import stat

import pytest

from d2v_hf.atomic_io import atomic_write_dir, atomic_write_file, atomic_write_text


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_failed_folder_write_leaves_the_old_folder_and_no_staging(tmp_path):
    target = tmp_path / "model"
    atomic_write_dir(target, lambda tmp: (tmp / "config.json").write_text("old"))

    def fails(tmp):
        (tmp / "config.json").write_text("new")
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        atomic_write_dir(target, fails)
    assert (target / "config.json").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["model"]
    atomic_write_dir(target, lambda tmp: (tmp / "weights").write_text("new"))
    assert sorted(path.name for path in target.iterdir()) == ["weights"]  # replaced whole


def test_written_folders_and_files_get_the_permissions_of_a_plain_write(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain.txt").write_text("x")
    atomic_write_dir(tmp_path / "folder", lambda tmp: None)
    atomic_write_text(tmp_path / "file.txt", "x")
    assert _mode(tmp_path / "folder") == _mode(tmp_path / "plain")  # tempfile.mkdtemp would make it 0700
    assert _mode(tmp_path / "file.txt") == _mode(tmp_path / "plain.txt")


def test_a_failed_file_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")

    def fails(tmp):
        tmp.write_text("half")
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        atomic_write_file(target, fails)
    assert target.read_text() == "old" and [path.name for path in tmp_path.iterdir()] == ["results.json"]
