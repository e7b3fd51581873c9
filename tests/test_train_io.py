import pytest

from pyterrier_shallow._io import atomic_write_bytes, atomic_write_dir, digest, readable_dir


def test_failed_directory_write_keeps_the_previous_one(tmp_path):
    target = tmp_path / "checkpoint"
    atomic_write_dir(target, lambda folder: (folder / "weights").write_text("first"))

    def fail(folder):
        (folder / "weights").write_text("half-written")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_dir(target, fail)
    assert (target / "weights").read_text() == "first"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint"]
    atomic_write_dir(target, lambda folder: (folder / "weights").write_text("second"))
    assert (target / "weights").read_text() == "second"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint"]


def test_a_swap_interrupted_between_renames_leaves_the_old_copy_readable(tmp_path):
    target = tmp_path / "checkpoint"
    atomic_write_dir(target, lambda folder: (folder / "weights").write_text("first"))
    target.rename(tmp_path / "checkpoint.old")  # the state between the two renames of a swap
    assert readable_dir(target) == tmp_path / "checkpoint.old"
    atomic_write_dir(target, lambda folder: (folder / "weights").write_text("second"))
    assert readable_dir(target) == target and not (tmp_path / "checkpoint.old").exists()
    assert readable_dir(tmp_path / "missing") is None


def test_failed_file_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "cache.json", "not bytes")
    assert list(tmp_path.iterdir()) == []
    atomic_write_bytes(tmp_path / "cache.json", b"{}")
    assert [path.name for path in tmp_path.iterdir()] == ["cache.json"]


def test_digest_is_stable_and_order_sensitive():
    assert digest(["a", "b"], 3) == digest(["a", "b"], 3)
    assert digest(["a", "b"], 3) != digest(["b", "a"], 3)
    assert len(digest("x")) == 16
