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


def test_atomic_writes_give_the_usual_permissions(tmp_path):
    import os
    import stat

    from pyterrier_shallow._io import atomic_write_bytes, atomic_write_dir, atomic_write_with

    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_with(tmp_path / "b.csv", lambda path: path.write_text("a,b\n"))
        def fill(folder):
            (folder / "f").write_text("y")
            (folder / "private").write_text("z")
            (folder / "private").chmod(0o600)  # as some writers leave their files

        atomic_write_dir(tmp_path / "folder", fill)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "folder" / "private").stat().st_mode) == 0o644
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.bin", "b.csv", "folder"]
