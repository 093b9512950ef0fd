"""data.md5 is DVC's hash of the data read, data.pinned says whether it is what data.dvc pins, and
--require-pinned refuses anything else with exit 3."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from pipeline.core.errors import DataValidationError
from pipeline.core.provenance import collect_provenance, dvc_hash, dvc_md5, require_pinned
from tests.conftest import ROOT


def test_the_bundled_data_folder_is_pinned():
    prov = collect_provenance(ROOT, (str(ROOT / "data" / "digits.csv"),), ROOT / "data")
    tags = prov.as_tags()
    assert tags["data.md5"] == tags["data.dvc_md5"] == dvc_md5(ROOT) and tags["data.md5"].endswith(".dir")
    assert tags["data.pinned"] == "true"
    assert tags["data.file_md5"] == hashlib.md5((ROOT / "data" / "digits.csv").read_bytes()).hexdigest()
    require_pinned(prov, "data")  # passes


def test_other_data_is_tagged_with_its_own_hash_and_not_pinned(digits_csv):
    tags = collect_provenance(ROOT, (str(digits_csv),), digits_csv).as_tags()
    assert tags["data.md5"] == hashlib.md5(digits_csv.read_bytes()).hexdigest()  # DVC's hash of one file
    assert tags["data.pinned"] == "false" and tags["data.dvc_md5"] == dvc_md5(ROOT)


def test_an_edited_data_folder_is_not_pinned(tmp_path):
    """The project's own data/ as read, after someone changed a byte: no longer what data.dvc pins."""
    project = tmp_path / "proj"
    shutil.copytree(ROOT / "data", project / "data")
    shutil.copy(ROOT / "data.dvc", project / "data.dvc")
    assert dvc_hash(project / "data", project) == dvc_md5(project)
    csv = project / "data" / "digits.csv"
    csv.write_text(csv.read_text().replace("\n0,", "\n1,", 1))
    prov = collect_provenance(project, (str(csv),), project / "data")
    assert prov.data_md5 != dvc_md5(project) and prov.data_md5.endswith(".dir") and not prov.data_is_pinned
    with pytest.raises(DataValidationError) as refused:
        require_pinned(prov, project / "data")
    assert refused.value.exit_code == 3
    assert str(refused.value).startswith(f"data: --require-pinned: {project / 'data'} has DVC md5 {prov.data_md5}, "
                                         f"but data.dvc pins {dvc_md5(project)}")


def test_dvcignore_applies_as_in_dvc(tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(ROOT / "data", project / "data")
    (project / "data" / "notes.tmp").write_text("scratch")
    assert dvc_hash(project / "data", project) != dvc_md5(ROOT)  # a stray file changes the folder's hash ...
    (project / ".dvcignore").write_text("*.tmp\n")
    assert dvc_hash(project / "data", project) == dvc_md5(ROOT)  # ... unless DVC ignores it
