"""A directory written through `staged_dir` is swapped in whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from filters.cache import staged_dir


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("existed", [False, True], ids=["new", "replaced"])
def test_a_finished_block_replaces_the_target_with_exactly_what_was_written(
    tmp_path: Path, existed: bool
) -> None:
    target = tmp_path / "models" / "adapter"
    if existed:
        target.mkdir(parents=True)
        (target / "old.bin").write_text("old")
    with staged_dir(target) as staging:
        assert staging.parent == target.parent and staging != target
        (staging / "weights.bin").write_text("new")
        assert not (target / "weights.bin").exists()  # nothing visible before the end
    assert _tree(target) == {"weights.bin": "new"}
    assert [p.name for p in target.parent.iterdir()] == ["adapter"]  # no staging left


@pytest.mark.parametrize("existed", [False, True], ids=["new", "kept"])
def test_a_failed_block_leaves_the_target_as_it_was_and_no_staging(
    tmp_path: Path, existed: bool
) -> None:
    target = tmp_path / "adapter"
    if existed:
        target.mkdir()
        (target / "old.bin").write_text("old")
    with pytest.raises(RuntimeError, match="export failed"), staged_dir(target) as staging:
        (staging / "half.bin").write_text("half")
        raise RuntimeError("export failed")
    assert (_tree(target) if existed else target.exists()) == ({"old.bin": "old"} if existed
                                                                else False)
    assert [p.name for p in tmp_path.iterdir()] == (["adapter"] if existed else [])
